"""Incidents: alerts and correlation matches grouped by an incident key, triaged by responders.

- :mod:`.model`   the ``siem-incidents`` document and its status machine (every change in ``history``)
- :mod:`.builder` alert / correlation match -> :class:`~.builder.Signal`; opening and merging incidents
- :mod:`.store`   get + index with ``if_seq_no``/``if_primary_term`` (no scripts), retry on conflict
- :mod:`.cli`     ``siem incidents`` (list, show, ack, assign, resolve, false-positive, reopen, note)
"""
