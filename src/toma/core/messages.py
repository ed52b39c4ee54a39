"""What every message toma makes is framed by, whatever made it (a sequence, a newsletter).

The planners and the file readers decide these per sequence or newsletter; the
mail layer (:mod:`toma.mail.render`, :mod:`toma.mail.compose`) applies them.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

# What a message offers its reader as a way out:
#   "none"    — a personal note: no list headers, no footer (a reply asking to stop
#               is honoured by the inbox all the same);
#   "headers" — List-Unsubscribe (and one-click where possible), no footer;
#   "footer"  — the headers, and a footer with the postal address and the link in
#               both the text and the HTML part. Every newsletter is sent so.
WayOut = Literal["none", "headers", "footer"]
WAYS_OUT: Final[tuple[WayOut, ...]] = get_args(WayOut)

# The layout (templates/layouts/<name>.html) a template is framed in when its
# front matter names none.
DEFAULT_LAYOUT: Final = "default"
