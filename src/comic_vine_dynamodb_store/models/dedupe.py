"""``DedupeJob``: the one live job of a key, its owner, lease and outcome."""

from __future__ import annotations

import enum
from typing import Self

from pynamodb.attributes import BinaryAttribute, NumberAttribute, UnicodeAttribute

from comic_vine_dynamodb_store.keys import Entity, partition_key
from comic_vine_dynamodb_store.models.base import StoreItem

__all__ = ["DedupeJob", "JobStatus"]


class JobStatus(enum.StrEnum):
    """Life of a job: ``pending`` until its owner completes or fails it."""

    PENDING = "pending"
    COMPLETED = "completed"
    FAILED = "failed"


class DedupeJob(StoreItem):
    """The job of one dedupe key: one item per key, so one conditional write decides ownership.

    Key: ``PK = DEDUPE#<namespace>#=<key>``, ``SK = JOB``. ``owner_token`` identifies the
    owner, ``lease_expires_at_ms`` is when a pending job may be taken over; a completed job
    keeps its result (``data``/``encoding``) until ``ExpiresAt``. ``finished_by`` is the token
    of the ``complete``/``fail`` call that finished it, so a retried call knows its own write.
    """

    entity = Entity.DEDUPE
    JOB_SORT_KEY = "JOB"

    job_id = UnicodeAttribute(attr_name="JobId")
    owner_token = UnicodeAttribute(attr_name="Owner")
    status = UnicodeAttribute(attr_name="Status")
    lease_expires_at_ms = NumberAttribute(attr_name="LeaseExpiresAt")
    created_at_ms = NumberAttribute(attr_name="CreatedAt")
    updated_at_ms = NumberAttribute(attr_name="UpdatedAt")
    data = BinaryAttribute(attr_name="Data", legacy_encoding=False, null=True)
    encoding = UnicodeAttribute(attr_name="Enc", null=True)
    error = UnicodeAttribute(attr_name="Error", null=True)
    finished_by = UnicodeAttribute(attr_name="FinishedBy", null=True)

    @classmethod
    def key_of(cls, namespace: str, key: str) -> tuple[str, str]:
        """The ``(PK, SK)`` of the job for ``key``."""
        return partition_key(cls.entity, namespace, key), cls.JOB_SORT_KEY

    @classmethod
    def build_pending(
        cls,
        namespace: str,
        key: str,
        *,
        job_id: str,
        owner_token: str,
        now_ms: int,
        lease_ms: int,
    ) -> Self:
        """A new pending job owned by ``owner_token``, leased for ``lease_ms``."""
        if lease_ms <= 0:
            raise ValueError(f"lease_ms must be > 0, got {lease_ms}")
        pk, sk = cls.key_of(namespace, key)
        job = cls(
            pk,
            sk,
            job_id=job_id,
            owner_token=owner_token,
            status=JobStatus.PENDING.value,
            lease_expires_at_ms=now_ms + lease_ms,
            created_at_ms=now_ms,
            updated_at_ms=now_ms,
        )
        job.set_expiry(now_ms + lease_ms)
        job.index_under(namespace)
        return job

    @property
    def job_status(self) -> JobStatus:
        """``status`` as a :class:`JobStatus`."""
        return JobStatus(self.status)
