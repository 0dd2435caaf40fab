"""ORM models, one file per table; importing this package registers them all."""

from app.models.activity_minute import ActivityMinute
from app.models.admin_audit import AdminAudit
from app.models.api_key import ApiKey
from app.models.base import Base
from app.models.content_fingerprint import ContentFingerprint
from app.models.corpus_cell import CorpusCell
from app.models.dataset import Dataset
from app.models.dataset_share import DatasetShare
from app.models.dataset_version import DatasetVersion
from app.models.deployment import Deployment
from app.models.document import Document
from app.models.eval_item import EvalItem
from app.models.eval_run import EvalRun
from app.models.eval_set import EvalSet
from app.models.export import Export
from app.models.job import Job
from app.models.job_minute import JobMinute
from app.models.job_tally import JobTally
from app.models.llm_batch import LlmBatch
from app.models.minhash_band import MinhashBand
from app.models.scenario import Scenario
from app.models.shard import Shard
from app.models.team import Team
from app.models.tokenizer import Tokenizer
from app.models.usage_daily import UsageDaily
from app.models.work_item import WorkItem

__all__ = [
    "ActivityMinute",
    "AdminAudit",
    "ApiKey",
    "Base",
    "ContentFingerprint",
    "CorpusCell",
    "Dataset",
    "DatasetShare",
    "DatasetVersion",
    "Deployment",
    "Document",
    "EvalItem",
    "EvalRun",
    "EvalSet",
    "Export",
    "Job",
    "JobMinute",
    "JobTally",
    "LlmBatch",
    "MinhashBand",
    "Scenario",
    "Shard",
    "Team",
    "Tokenizer",
    "UsageDaily",
    "WorkItem",
]
