"""The supervisor's one error type (its own module: the admin API and the supervisor both
name it, and the supervisor builds the admin API)."""


class WorkerError(Exception):
    """A worker could not be started, or a push could not be applied by every worker."""
