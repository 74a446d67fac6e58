"""Pure logic of the quality checks: no Beam, no models; each module one check or helper."""
