"""The composition root: builds the core, the HTTP app and the gRPC server into one worker.

Nothing imports it but the gunicorn hooks (web/serve.py); it imports actors, web and rpc.
"""
