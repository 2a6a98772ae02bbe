"""The render-farm worker: what a queue-fed Blender worker (a Kubernetes pod) runs.

It takes chunk messages from SQS, renders them with the run's own chunk script (the one a
Slurm array task runs, uploaded by the user side), puts each frame in S3 the moment it is
whole, and encodes the video once every frame exists. It imports nothing outside its
own package (relative imports only), so it runs from the installed package, from a
container image built from it, or as a zipapp beside a stock Blender image.
"""
