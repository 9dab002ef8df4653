"""The application service (``Service``): the one door through which the page, the commands and the HTTP API reach
documents and the index. The only package of ``rag`` that may import ``ingest`` (besides ``python -m rag.eval``): it
sits on top of both layers. What its callers need to name comes from here too (uploads, reports, progress, the
events of an answer and of an agent run)."""

from ingest.loaders import SUPPORTED_SUFFIXES
from ingest.report import Failure, IngestReport, Progress, ProgressCallback
from rag.agent.events import AgentEvent, AgentFinished, AgentStep, AgentText
from rag.answer.answerer import Checking, Delta, Event, Finished, Retrieved
from rag.index.records import DocumentInfo, StoreError
from rag.service.app import Service
from rag.service.library import Library, Upload, UploadError, sanitize_filename

__all__ = [
    "SUPPORTED_SUFFIXES",
    "AgentEvent",
    "AgentFinished",
    "AgentStep",
    "AgentText",
    "Checking",
    "Delta",
    "Event",
    "Finished",
    "Retrieved",
    "DocumentInfo",
    "Failure",
    "IngestReport",
    "Library",
    "Progress",
    "ProgressCallback",
    "Service",
    "StoreError",
    "Upload",
    "UploadError",
    "sanitize_filename",
]
