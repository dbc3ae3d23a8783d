"""`botreg review`: what a pull request changes, for the people who approve it."""

from botreg.review.build import Review, build_review
from botreg.review.render import MARKER, render_json, render_markdown, render_text

__all__ = ["MARKER", "Review", "build_review", "render_json", "render_markdown", "render_text"]
