"""The dashboard's JSON REST API: the endpoint table and its handlers (`routes`), the auth and
error middlewares (`middleware`), the typed app keys of the services (`services`) and the
OpenAPI document generated from the table (`openapi`). The app itself is built in `app.py`."""
