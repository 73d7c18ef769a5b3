"""``nmt serve``: an HTTP JSON API and a web page over any model, with dynamic batching.

- :mod:`nmt.serve.batcher`: gathers concurrent requests into one search (worker thread);
- :mod:`nmt.serve.service`: what the worker runs (translation, attention);
- :mod:`nmt.serve.app`: the FastAPI routes, request limits and JSON errors;
- :mod:`nmt.serve.server`: loading the model and running uvicorn.
"""
