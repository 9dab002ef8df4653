"""Kept conversations: saved beside the index (``store``) and exported as Markdown (``export``)."""

from rag.conversations.export import file_name, to_markdown
from rag.conversations.store import Conversation, ConversationInfo, ConversationStore, title_for

__all__ = ["Conversation", "ConversationInfo", "ConversationStore", "file_name", "title_for", "to_markdown"]
