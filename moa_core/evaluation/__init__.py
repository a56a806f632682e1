"""Evaluation: question sets, the pairwise judge, reports, and (later) the runner.

Submodules are imported explicitly by their users; nothing is re-exported here so that
importing one part (e.g. question loading in the CLI) never pulls in pandas or litellm.
"""
