"""Simulated ring network: switches and UPS as real SNMP agents (pysnmp's agent side, in-process).

- :mod:`.mib`: the OIDs served and a live MIB view (values computed at each request);
- :mod:`.switch`, :mod:`.ups`: one simulated device each, with faults (:class:`simulators.faults.FaultHolder`);
- :mod:`.network`: the ring's links, the MRP manager's view and what a cut isolates;
- :mod:`.agent`: one SNMP agent (v2c community, v3 USM user) per device, on its host:port;
- :mod:`.site`: all of it for a site file, for :class:`simulators.site.SiteSimulator`.
"""
