"""Background jobs on taskiq: the broker and its retries (`broker.py`), what jobs may use
(`context.py`), and the jobs themselves (one module each).
"""
