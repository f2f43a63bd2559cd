"""Masking of personal identifiers for logs, previews and metadata."""


def mask_email(email: str | None) -> str | None:
    """Mask an email as 'j***@example.com', keeping the first character and the domain."""
    if not email:
        return email
    local, sep, domain = email.partition("@")
    if not sep:
        return "***"
    return f"{local[:1]}***@{domain}"


def mask_phone(phone: str | None) -> str | None:
    """Mask a phone number, keeping the last two digits."""
    if not phone:
        return phone
    return "***" + phone[-2:]


def mask_identity(email: str | None, phone_number: str | None, external_id: str | None) -> str:
    """Describe a profile identity for logs without showing an email or phone in full."""
    parts = []
    if email:
        parts.append(f"email={mask_email(email)}")
    if phone_number:
        parts.append(f"phone={mask_phone(phone_number)}")
    if external_id:
        parts.append(f"external_id={external_id}")
    return " ".join(parts) if parts else "(no identifier)"
