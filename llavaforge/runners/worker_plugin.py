"""Importing this module mends the SDK worker process that imports it: two malloc arenas and
freed heap given back every few seconds (allocator.py), closed output buffers let go
(output_streams.py), data-channel messages and queues bounded (input_messages.py).

Beam's SDK worker imports the modules named by `--beam_plugins` at its start, before its harness
connects. Every run's options name this one (options.py), so the workers llavaforge does not start
itself get the mends too: the DirectRunner's multi-processing workers and Dataflow's. The job
service's workers import it themselves (zygote.py), before Beam's worker starts. The zygote must
never import it: a thread started before a fork does not run in the children.
"""

from llavaforge.runners.allocator import limit_malloc_arenas, trim_heap_periodically
from llavaforge.runners.input_messages import bound_data_channel_messages
from llavaforge.runners.output_streams import release_closed_output_streams

limit_malloc_arenas()
release_closed_output_streams()
bound_data_channel_messages()
trim_heap_periodically()
