"""Audio and images named by URL in a request, fetched SSRF-safely (core.safe_fetch) and inlined, so a
provider never fetches a caller's URL itself."""

from __future__ import annotations

import base64
import binascii
import posixpath
from urllib.parse import urlsplit

from ionflux.core.errors import InvalidRequest
from ionflux.core.safe_fetch import FetchPolicy, SafeFetcher
from ionflux.llm.settings import LLMSettings
from ionflux.llm.types import Audio, Image

IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
AUDIO_TYPES = ("audio/", "video/mp4", "video/webm", "video/mpeg", "application/ogg", "application/octet-stream")
_EXTENSIONS = {"audio/mpeg": "mp3", "audio/mp3": "mp3", "audio/wav": "wav", "audio/x-wav": "wav",
               "audio/wave": "wav", "audio/flac": "flac", "audio/x-flac": "flac", "audio/ogg": "ogg",
               "application/ogg": "ogg", "audio/webm": "webm", "video/webm": "webm", "audio/mp4": "m4a",
               "audio/m4a": "m4a", "audio/x-m4a": "m4a", "video/mp4": "mp4", "video/mpeg": "mpeg"}
AUDIO_EXTENSIONS = ("flac", "mp3", "mp4", "mpeg", "mpga", "m4a", "ogg", "wav", "webm")


class MediaFetcher:
    def __init__(self, settings: LLMSettings) -> None:
        allow = tuple(settings.fetch_allow_networks)
        self.images = SafeFetcher(FetchPolicy(max_bytes=settings.fetch_max_image_bytes, timeout=settings.fetch_timeout,
                                              content_types=IMAGE_TYPES, allow_networks=allow))
        self.audio = SafeFetcher(FetchPolicy(max_bytes=settings.fetch_max_audio_bytes, timeout=settings.fetch_timeout,
                                             content_types=AUDIO_TYPES, allow_networks=allow))

    async def aclose(self) -> None:
        await self.images.aclose()
        await self.audio.aclose()

    async def image(self, url: str, *, field: str = "image_input_url") -> Image:
        if url.startswith("data:"):
            return decode_data_url(url, field=field)
        fetched = await self.images.fetch(url, field=field)
        return Image(fetched.content, fetched.content_type)

    async def audio_file(self, url: str, *, field: str = "audio_input_url") -> Audio:
        fetched = await self.audio.fetch(url, field=field)
        name = posixpath.basename(urlsplit(fetched.url).path) or "audio"
        ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
        if ext not in AUDIO_EXTENSIONS:
            ext = _EXTENSIONS.get(fetched.content_type, "")
            if not ext:
                raise InvalidRequest(f"{field}: cannot tell the audio format (name the file with one of "
                                     f"{', '.join(AUDIO_EXTENSIONS)}, or serve a specific audio content type)",
                                     field=field)
            name = f"{name}.{ext}"
        return Audio(fetched.content, name, fetched.content_type)


def decode_data_url(url: str, *, field: str) -> Image:
    header, sep, payload = url.partition(",")
    media_type = header[5:].split(";", 1)[0].lower()
    if not sep or ";base64" not in header or media_type not in IMAGE_TYPES:
        raise InvalidRequest(f"{field}: a data URL must be base64 and one of {', '.join(IMAGE_TYPES)}", field=field)
    try:
        return Image(base64.b64decode(payload, validate=True), media_type)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"{field}: the data URL is not valid base64", field=field) from None
