"""The Gradio page (see README.md in this folder for where each kind of change goes)."""
