"""The AWS Lambda side: everything that knows about Lambda, API Gateway and AWS.

handler        the entry point Lambda imports (the only import-time side effects)
function       LambdaFunction: model, app through Mangum, galleries, warm-up, event dispatch
observability  Powertools logger, metrics, tracing and the request observer
warmup         warm-up requests through the whole stack (provisioned inits, or the first ping)
events         API Gateway event builders (warm-up, samples, tests)
sources        what the function reads from AWS: API key (SSM/Secrets Manager), model from S3
"""
