"""The session configs shipped with rt_recon (``demo.yaml`` is the embedded default).

This folder installs as the package ``rt_recon.configs``, its YAML files as
package data; code finds them with
``importlib.resources.files("rt_recon.configs")``, never by a path relative
to the source tree.
"""
