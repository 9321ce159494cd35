"""Metrics: sample fidelity (torch-fidelity) and grading (scikit-learn)."""
