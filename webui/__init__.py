"""Web UI (Gradio, webUI.py) and HTTP APIs (FastAPI, flask_api*.py) over one shared voice service."""
