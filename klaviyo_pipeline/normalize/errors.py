"""Errors raised by the normalizers."""


class NormalizationConfigError(ValueError):
    """Invalid or missing configuration that the normalizers need, such as the source timezone.

    The message names the setting, the value and the fix. An invalid value gets a reason in
    the returned reasons Series instead, so this error means that the configuration must change.
    """
