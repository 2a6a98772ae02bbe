"""Where inputs come from and outputs go when they are not on the cluster's filesystem.

`s3` reads `.blend` scenes from S3 and uploads rendered frames and videos back as they
finish; boto3 is imported only when one of its functions runs, so commands that never
touch S3 (and `hpcrun --help`) do not pay for it.
"""
