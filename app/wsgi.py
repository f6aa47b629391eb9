"""The WSGI entry point for production servers: ``gunicorn -k gevent 'app.wsgi:app'``.

gunicorn's gevent worker monkey-patches before importing this module, so the SSE hub's
threads are greenlets. Settings come from the environment (``app.config``)."""
from app import create_app, prepare_to_serve

app = create_app()
prepare_to_serve(app)  # what create_app leaves to first use: the OpenAPI document
