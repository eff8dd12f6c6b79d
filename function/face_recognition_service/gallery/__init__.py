"""Gallery snapshots for /identify: the caller's enrolled embeddings in one
file the service maps and searches, and never writes.

    format   the file: header, float32 vectors, ids, optional usearch index
    build    JSON Lines (or an /embed/batch answer) -> snapshot, hygiene report
    search   exact below EXACT_LIMIT vectors, usearch HNSW above (exact re-scoring)
    cache    snapshots per warm process, from GALLERY_DIR or GALLERY_S3_BUCKETS

``python -m face_recognition_service.gallery build --input FILE --output PATH``
and ``... gallery inspect PATH``.
"""
