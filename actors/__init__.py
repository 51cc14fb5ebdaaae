"""The core of the gateway: settings, the event model, and the Pykka actors.

Nothing here imports Flask or grpc; importing this package imports nothing heavy,
so gunicorn's (unpatched) master can read the settings safely.
"""
