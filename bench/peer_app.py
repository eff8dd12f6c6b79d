"""The straightforward peer: the seed built the way most people would build it.

FastAPI, InsightFace's FaceAnalysis(...).get() per request, the first face's
embedding as a list, and compare as a per-reference Python loop (the seed's own
example uses scipy's cosine in a loop). Used only as a yardstick by the benchmarks.

    PEER_MODEL_DIR=~/.insightface/models/buffalo_sc uvicorn bench.peer_app:app
"""

from __future__ import annotations

import base64
import os
from typing import Any

import cv2
import numpy as np
from fastapi import FastAPI, HTTPException
from insightface.app import FaceAnalysis
from pydantic import BaseModel
from scipy.spatial.distance import cosine, euclidean

face_app = FaceAnalysis(
    name=os.path.expanduser(os.environ["PEER_MODEL_DIR"]), providers=["CPUExecutionProvider"]
)
face_app.prepare(ctx_id=-1, det_size=(640, 640))
app = FastAPI()


class EmbedRequest(BaseModel):
    image: str


class Reference(BaseModel):
    id: str
    embedding: list[float]


class CompareRequest(BaseModel):
    query_embedding: list[float]
    reference_embeddings: list[Reference]
    distance_metric: str = "cosine"


@app.get("/api/v1/health")
def health() -> dict[str, object]:
    return {"status": "healthy", "model_loaded": True, "model_name": "peer"}


@app.post("/api/v1/embed")
def embed(req: EmbedRequest) -> dict[str, object]:
    data = req.image.split(",", 1)[1] if req.image.startswith("data:") else req.image
    img = cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise HTTPException(400, "INVALID_IMAGE")
    faces = face_app.get(img)
    if not faces:
        raise HTTPException(422, "NO_FACE_DETECTED")
    return {
        "embedding": faces[0].normed_embedding.tolist(),
        "face_detected": True,
        "detection_score": float(faces[0].det_score),
    }


@app.post("/api/v1/compare")
def compare(req: CompareRequest) -> dict[str, object]:
    fn = cosine if req.distance_metric == "cosine" else euclidean
    matches: list[dict[str, Any]] = []
    for ref in req.reference_embeddings:
        d = float(fn(req.query_embedding, ref.embedding))
        matches.append({"id": ref.id, "distance": d, "similarity": 1 - d})
    matches.sort(key=lambda m: m["distance"])
    return {"matches": matches, "best_match": matches[0], "distance_metric": req.distance_metric}
