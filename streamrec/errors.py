"""One root exception type: anything a user can cause ends as one clear sentence."""


class StreamrecError(Exception):
    """An error a user can act on; the CLI prints its message on one line and exits non-zero."""

    exit_code = 1


class DataError(StreamrecError):
    """A dataset file is missing, malformed or in an unknown layout."""


class KafkaUnavailable(StreamrecError):
    """The Kafka broker cannot be reached or started."""


class ModelStoreError(StreamrecError):
    """The model store has no usable model, or a version is incomplete or corrupt."""


class QualityGateFailed(StreamrecError):
    """A trained model is worse than the current one by more than the allowed margin."""

    exit_code = 3


class NotFound(StreamrecError):
    """An id the user asked for (movie, user, model version) is unknown."""


class InvalidRequest(StreamrecError):
    """A request names something impossible (a rating outside the domain, an unknown option)."""


def first_line(exc: BaseException | None) -> str:
    """An exception as one line: its first line of text (py4j's `desc`, a DB driver's `orig`
    when a wrapper holds one), else its type's name."""
    if exc is None:
        return "no error reported"
    text = str(getattr(exc, "desc", None) or getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
