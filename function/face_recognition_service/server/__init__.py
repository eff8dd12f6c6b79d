"""The plain-server side (uvicorn, Docker, ``make run``): entry point and JSON logging.

python -m face_recognition_service.server
uvicorn face_recognition_service.server.main:app --host 0.0.0.0 --port 8000
"""
