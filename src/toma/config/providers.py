"""Provider presets: what ``provider = "gmail"`` fills in, as plain data.

A preset gives the defaults of ``[smtp]``, ``[imap]`` and ``[oauth2]`` for one mail
provider; every key written in config.toml wins over it. The facts come from each
provider's own documentation (see the README's provider sections, which cite the
same numbers); a provider that changes them needs a change here, not in code.

``rate_per_minute`` is chosen so that a day of sending at that pace stays within
what the provider documents, and ``per_day`` is the provider's own daily limit
(messages or recipients, whichever it counts), kept as a fact for the README and
for code that counts a day's sends.

``sent_folder`` is the usual name of the Sent folder (the server's SPECIAL-USE
``\\Sent`` flag, RFC 6154, beats it where offered) and ``files_sent_itself`` says
whether the provider files mail submitted over its SMTP in that folder by itself
(Gmail does): then a copy of toma's own would be a second one.
"""

from __future__ import annotations

from dataclasses import dataclass

# Microsoft's endpoints for work and school accounts of any tenant; a single-tenant
# app registration puts its tenant id in place of "organizations" ([oauth2] token_url …).
_MS = "https://login.microsoftonline.com/organizations/oauth2/v2.0"
_MS_CONSUMERS = "https://login.microsoftonline.com/consumers/oauth2/v2.0"
_GOOGLE_TOKEN = "https://oauth2.googleapis.com/token"  # noqa: S105 - an address, not a secret
_MS_SCOPES = (
    "https://outlook.office.com/IMAP.AccessAsUser.All",
    "https://outlook.office.com/SMTP.Send",
    "offline_access",
)


@dataclass(frozen=True)
class OAuth2Preset:
    token_url: str
    authorization_url: str
    device_authorization_url: str  # "" when the provider's device flow cannot grant mail scopes
    scopes: tuple[str, ...]
    needs_client_secret: bool  # Google's installed apps send their (non-secret) secret


@dataclass(frozen=True)
class Preset:
    name: str
    smtp_host: str
    smtp_port: int
    smtp_security: str
    imap_host: str
    imap_port: int
    imap_security: str
    auth: str  # "password" (an app password) | "xoauth2"
    rate_per_minute: int
    per_day: int
    sent_folder: str
    files_sent_itself: bool
    oauth2: OAuth2Preset | None = None


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            name="microsoft365",
            smtp_host="smtp.office365.com",
            smtp_port=587,
            smtp_security="starttls",
            imap_host="outlook.office365.com",
            imap_port=993,
            imap_security="tls",
            auth="xoauth2",
            # Exchange Online: 30 messages a minute, 10,000 recipients a day.
            rate_per_minute=6,
            per_day=10_000,
            sent_folder="Sent Items",
            files_sent_itself=False,
            oauth2=OAuth2Preset(
                token_url=f"{_MS}/token",
                authorization_url=f"{_MS}/authorize",
                device_authorization_url=f"{_MS}/devicecode",
                scopes=_MS_SCOPES,
                needs_client_secret=False,
            ),
        ),
        Preset(
            name="outlook",
            smtp_host="smtp-mail.outlook.com",
            smtp_port=587,
            smtp_security="starttls",
            imap_host="outlook.office365.com",
            imap_port=993,
            imap_security="tls",
            auth="xoauth2",
            # Outlook.com: 300 recipients a day.
            rate_per_minute=1,
            per_day=300,
            sent_folder="Sent",
            files_sent_itself=False,
            oauth2=OAuth2Preset(
                token_url=f"{_MS_CONSUMERS}/token",
                authorization_url=f"{_MS_CONSUMERS}/authorize",
                device_authorization_url=f"{_MS_CONSUMERS}/devicecode",
                scopes=_MS_SCOPES,
                needs_client_secret=False,
            ),
        ),
        Preset(
            name="gmail",
            smtp_host="smtp.gmail.com",
            smtp_port=465,
            smtp_security="tls",
            imap_host="imap.gmail.com",
            imap_port=993,
            imap_security="tls",
            auth="xoauth2",
            # A personal Gmail account: 500 recipients a day.
            rate_per_minute=1,
            per_day=500,
            sent_folder="[Gmail]/Sent Mail",
            files_sent_itself=True,
            oauth2=OAuth2Preset(
                token_url=_GOOGLE_TOKEN,
                authorization_url="https://accounts.google.com/o/oauth2/v2/auth",
                # Google's device flow does not grant the mail scope: loopback redirect.
                device_authorization_url="",
                scopes=("https://mail.google.com/",),
                needs_client_secret=True,
            ),
        ),
        Preset(
            name="google_workspace",
            smtp_host="smtp.gmail.com",
            smtp_port=465,
            smtp_security="tls",
            imap_host="imap.gmail.com",
            imap_port=993,
            imap_security="tls",
            auth="xoauth2",
            # Google Workspace: 2,000 messages a day per user.
            rate_per_minute=2,
            per_day=2_000,
            sent_folder="[Gmail]/Sent Mail",
            files_sent_itself=True,
            oauth2=OAuth2Preset(
                token_url=_GOOGLE_TOKEN,
                authorization_url="https://accounts.google.com/o/oauth2/v2/auth",
                device_authorization_url="",
                scopes=("https://mail.google.com/",),
                needs_client_secret=True,
            ),
        ),
        Preset(
            name="fastmail",
            smtp_host="smtp.fastmail.com",
            smtp_port=465,
            smtp_security="tls",
            imap_host="imap.fastmail.com",
            imap_port=993,
            imap_security="tls",
            auth="password",  # an app password; Fastmail's OAuth2 is for its partners only
            rate_per_minute=4,
            per_day=8_000,
            sent_folder="Sent",
            files_sent_itself=False,
        ),
        Preset(
            name="icloud",
            smtp_host="smtp.mail.me.com",
            smtp_port=587,
            smtp_security="starttls",
            imap_host="imap.mail.me.com",
            imap_port=993,
            imap_security="tls",
            auth="password",  # an app-specific password
            # iCloud Mail: 1,000 messages a day, 500 recipients a message.
            rate_per_minute=1,
            per_day=1_000,
            sent_folder="Sent Messages",
            files_sent_itself=False,
        ),
        Preset(
            name="yahoo",
            smtp_host="smtp.mail.yahoo.com",
            smtp_port=465,
            smtp_security="tls",
            imap_host="imap.mail.yahoo.com",
            imap_port=993,
            imap_security="tls",
            auth="password",  # an app password
            # Yahoo Mail: 500 messages a day, each recipient counted.
            rate_per_minute=1,
            per_day=500,
            sent_folder="Sent",
            files_sent_itself=False,
        ),
    )
}


def preset(name: str) -> Preset:
    """The preset called ``name``; ValueError naming those there are."""
    try:
        return PRESETS[name]
    except KeyError:
        known = ", ".join(f'"{known}"' for known in PRESETS)
        raise ValueError(f"unknown provider {name!r}: toma knows {known}") from None
