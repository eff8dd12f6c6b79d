-- Face templates in PostgreSQL with pgvector: for galleries past one function's
-- memory, or backends that already keep embeddings in PostgreSQL. The service
-- still makes the embeddings (/api/v1/embed) and the thresholds
-- (/api/v1/model-info "identification"); the database only searches.
-- Tested by tests/test_pgvector_recipe.py against a real PostgreSQL + pgvector.
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE IF NOT EXISTS face_templates (
    template_id bigserial PRIMARY KEY,
    person_id   text        NOT NULL,
    -- The model tag /embed returned with the embedding: compare only within one
    -- tag (a re-enrolment with a new model gets new rows, not updated ones).
    model       text        NOT NULL,
    -- As /embed returned it: 512 values, unit length.
    embedding   vector(512) NOT NULL,
    enrolled_at timestamptz NOT NULL DEFAULT now()
);

-- Cosine HNSW: `<=>` is the cosine distance, 1 - similarity.
CREATE INDEX IF NOT EXISTS face_templates_embedding_hnsw
    ON face_templates USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 128);
CREATE INDEX IF NOT EXISTS face_templates_person ON face_templates (person_id);
