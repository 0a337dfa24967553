"""Training of the small SEEM shipped in ``models/``: on-the-fly examples from procedural scenes
(:mod:`.data`), the SEEM losses (:mod:`.losses`) and the ``seem-ros train`` command (:mod:`.train`)."""
