"""What the service does, one module a use case: a typed request in, the
answer's fields out. No FastAPI, Starlette, Mangum or boto3 here: the HTTP
routes (``api.routes``) and the SQS handler (``aws_lambda.queue``) only
translate to and from these.

    embed     one photo -> its face (or faces)
    batch     many photos -> one recogniser pass
    verify    a probe against one person's (or a few people's) references
    compare   a query embedding ranked against references
"""
