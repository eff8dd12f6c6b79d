"""Gallery snapshots for /identify: the caller's enrolled embeddings in one
file; the service searches its own private copy of it, and never writes it.

    format   the file: header, float32 vectors, ids, optional PQ index; the private copy
    build    JSON Lines (or an /embed/batch answer) -> snapshot, hygiene report
    search   exact up to EXACT_LIMIT vectors, a PQ index above (exact re-scoring)
    cache    snapshots per warm process, from GALLERY_DIR or GALLERY_S3_BUCKETS

``python -m face_recognition_service.gallery build --input FILE --output PATH``
and ``... gallery inspect PATH``.
"""
