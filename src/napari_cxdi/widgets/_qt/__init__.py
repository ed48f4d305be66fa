"""Small Qt building blocks shared by the docks: collapsible sections, a scrolling dock body."""

from .sections import CollapsibleSection, ScrollingDock

__all__ = ["CollapsibleSection", "ScrollingDock"]
