"""The live console of a site (``minegw console``, docs/console.md): :mod:`.model` (what the site's MQTT
topics say, no Textual), :mod:`.feed` (the subscription), :mod:`.views` (the panels as rich renderables),
:mod:`.app` (the Textual app)."""
