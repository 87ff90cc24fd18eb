"""The steps of one ingest batch inside its transaction, one module per concern.

transaction.write_batch runs them in order: sequences (refuse jumps), events (insert,
conflicting duplicates), evidence (rows and files), incidents (cases: match, open, fold,
link), evidence again (case links), chains (hash chains), sequences (gaps). Each step is a
handful of set-based statements, whatever the batch's size.
"""
