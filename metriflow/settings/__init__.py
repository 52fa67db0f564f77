"""Settings, one module per environment.

``base`` holds everything and reads the environment (see ``.env.example``);
``local`` is the developer default, ``test`` is used by pytest and
``production`` refuses to start with a default secret key or DEBUG on.
"""
