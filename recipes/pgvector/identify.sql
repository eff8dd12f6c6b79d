-- Who is this? The best template of each person nearest the probe, best first.
-- Parameters (psycopg style): probe (the /embed embedding as a '[...]' vector
-- literal), model (its tag), threshold (/model-info "identification": the
-- operating point's threshold for your number of persons), top_k, and
-- candidates (templates to look at; a few times top_k, more when people have
-- many templates). Run `SET hnsw.ef_search = 200` (at least candidates) first.
WITH nearest AS (
    SELECT person_id, 1 - (embedding <=> %(probe)s::vector) AS similarity
    FROM face_templates
    WHERE model = %(model)s
    ORDER BY embedding <=> %(probe)s::vector
    LIMIT %(candidates)s
)
SELECT person_id, max(similarity) AS similarity, max(similarity) >= %(threshold)s AS match
FROM nearest
GROUP BY person_id
ORDER BY similarity DESC
LIMIT %(top_k)s;
