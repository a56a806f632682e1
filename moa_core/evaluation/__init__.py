"""Evaluation: question sets, contenders, the pairwise judge, the batch runner, reports.

Submodules are imported explicitly by their users; nothing is re-exported here so that
importing one part (e.g. question loading in the CLI) never pulls in pandas or litellm.
"""
