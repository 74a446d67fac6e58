"""Stage each image's bytes once, right after decode, in the run's staging folder: from there
on records cross stage boundaries without them (`ImageInfo.staged`), and the stages that look
at pixels or write images read them back where they run."""

from __future__ import annotations

import dataclasses

import apache_beam as beam

from llavaforge.schemas.layout import image_name
from llavaforge.schemas.record import ImageRecord
from llavaforge.storage import join, write_atomic


def staged(record: ImageRecord, folder: str) -> ImageRecord:
    """`record` with its bytes written to `folder` (named by key: a retried bundle, or an exact
    duplicate, rewrites the same bytes under the same name)."""
    url = join(folder, image_name(record.key, record.image.format))
    # Not synced: a crash loses the run, and the next run of the prefix removes its staging.
    write_atomic(url, record.image.data, durable=False)
    return record.replace(image=dataclasses.replace(record.image, staged=url))


class StageImages(beam.PTransform):
    """ImageRecords -> the same records, their bytes staged under `folder`."""

    def __init__(self, folder: str) -> None:
        super().__init__()
        self.folder = folder

    def expand(self, records):
        return records | "WriteBytes" >> beam.Map(staged, self.folder)
