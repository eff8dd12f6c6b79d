"""template.yaml: validated offline by `sam validate` and cfn-lint, and the
SAM-translated resources checked where it matters (alias, concurrency, route)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
TEMPLATE = ROOT / "template.yaml"
BIN = Path(sys.executable).parent
OFFLINE_ENV = {
    **os.environ,
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "SAM_CLI_TELEMETRY": "0",
}


class CfnLoader(yaml.SafeLoader):  # type: ignore[misc]
    pass


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


CfnLoader.add_multi_constructor("!", _intrinsic)


def load_template() -> dict[str, Any]:
    return yaml.load(TEMPLATE.read_text(), Loader=CfnLoader)  # type: ignore[no-any-return]


def sam_validate(path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    # Plain `sam validate` runs the SAM translator; `--lint` runs cfn-lint instead of it.
    return subprocess.run(
        [str(BIN / "sam"), "validate", "--template-file", str(path), *extra],
        capture_output=True,
        text=True,
        env=OFFLINE_ENV,
        timeout=300,
        cwd=ROOT,
    )


@pytest.mark.parametrize("extra", [(), ("--lint",)], ids=["translate", "lint"])
def test_sam_validate(extra: tuple[str, ...]) -> None:
    result = sam_validate(TEMPLATE, *extra)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout + result.stderr


def test_cfn_lint() -> None:
    result = subprocess.run(
        [str(BIN / "cfn-lint"), str(TEMPLATE)], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_sam_validate_catches_concurrency_without_alias(tmp_path: Path) -> None:
    # The mistake cfn-lint alone misses: provisioned concurrency needs an alias.
    broken = TEMPLATE.read_text().replace("      AutoPublishAlias: live\n", "")
    path = tmp_path / "template.yaml"
    path.write_text(broken)
    result = sam_validate(path)
    assert result.returncode != 0
    assert "AutoPublishALias must be defined" in result.stdout + result.stderr


def translate(parameters: dict[str, str]) -> dict[str, Any]:
    from samtranslator.parser import parser
    from samtranslator.translator.translator import Translator

    template = copy.deepcopy(load_template())
    # A built image would be pushed to ECR; translation only needs some URI.
    template["Resources"]["FaceFunction"]["Properties"]["ImageUri"] = (
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/face:latest"
    )
    translated: dict[str, Any] = Translator(managed_policy_map=None, sam_parser=parser.Parser()).translate(
        sam_template=template, parameter_values=parameters, get_managed_policy_map=lambda: {}
    )
    return translated


def resources_of(translated: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in translated["Resources"].items() if v["Type"] == kind}


def test_alias_carries_provisioned_concurrency_and_route_targets_it() -> None:
    out = translate({"ProvisionedConcurrency": "5"})
    aliases = resources_of(out, "AWS::Lambda::Alias")
    assert list(aliases) == ["FaceFunctionAliaslive"]
    alias = aliases["FaceFunctionAliaslive"]["Properties"]
    assert alias["Name"] == "live" and "ProvisionedConcurrencyConfig" in alias
    function = resources_of(out, "AWS::Lambda::Function")["FaceFunction"]["Properties"]
    assert "ProvisionedConcurrencyConfig" not in function
    assert function["PackageType"] == "Image" and function["Timeout"] < 30
    api = next(iter(resources_of(out, "AWS::ApiGatewayV2::Api").values()))["Properties"]
    body = json.dumps(api["Body"])
    assert "FaceFunctionAliaslive" in body, "the HTTP API must invoke the alias, not $LATEST"
    permissions = resources_of(out, "AWS::Lambda::Permission")
    assert permissions and all(
        p["Properties"]["FunctionName"] == {"Ref": "FaceFunctionAliaslive"} for p in permissions.values()
    )
    stage = next(iter(resources_of(out, "AWS::ApiGatewayV2::Stage").values()))["Properties"]
    assert stage["DefaultRouteSettings"]["ThrottlingRateLimit"] == {"Ref": "ThrottlingRateLimit"}


def test_parameters_and_outputs() -> None:
    template = load_template()
    params = template["Parameters"]
    assert {
        "MemorySize",
        "Architecture",
        "ModelName",
        "ProvisionedConcurrency",
        "LogLevel",
        "CorsOrigins",
    } <= set(params)
    assert params["Architecture"]["AllowedValues"] == ["x86_64", "arm64"]
    assert params["ProvisionedConcurrency"]["Default"] == 0
    assert "ApiUrl" in template["Outputs"]
    meta = template["Resources"]["FaceFunction"]["Metadata"]
    assert meta["Dockerfile"] == "Dockerfile.lambda" and (ROOT / meta["Dockerfile"]).is_file()


@pytest.mark.parametrize("name", ["samconfig.toml"])
def test_infra_files_exist(name: str) -> None:
    assert (ROOT / "infra" / name).is_file()


def test_queue_mode_resources() -> None:
    out = translate({"QueueBatchSize": "5", "QueueBatchingWindow": "3"})
    mappings = resources_of(out, "AWS::Lambda::EventSourceMapping")
    assert len(mappings) == 1
    mapping = next(iter(mappings.values()))["Properties"]
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BatchSize"] == {"Ref": "QueueBatchSize"}
    assert mapping["MaximumBatchingWindowInSeconds"] == {"Ref": "QueueBatchingWindow"}
    queues = resources_of(out, "AWS::SQS::Queue")
    assert set(queues) == {"EmbedQueue", "EmbedDeadLetterQueue"}
    redrive = queues["EmbedQueue"]["Properties"]["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["EmbedDeadLetterQueue", "Arn"]}
    env = resources_of(out, "AWS::Lambda::Function")["FaceFunction"]["Properties"]["Environment"]["Variables"]
    assert env["RESULTS_S3_URI"] == {"Fn::Sub": "s3://${ResultsBucket}/results"}
    role = resources_of(out, "AWS::IAM::Role")["FaceFunctionRole"]["Properties"]
    # The poller's permissions (receive, delete, change visibility) on the queue.
    assert any("AWSLambdaSQSQueueExecutionRole" in str(arn) for arn in role["ManagedPolicyArns"])


def test_image_buckets_are_the_only_readable_ones() -> None:
    role = resources_of(translate({"ImageBuckets": "photos-a,photos-b"}), "AWS::IAM::Role")[
        "FaceFunctionRole"
    ]
    statements = [
        p["Fn::If"][1]["PolicyDocument"]["Statement"]
        for p in role["Properties"]["Policies"]
        if isinstance(p, dict) and p.get("Fn::If", [None])[0] == "HasImageBuckets"
    ]
    assert len(statements) == 1 and statements[0][0]["Action"] == "s3:GetObject"
    # One object ARN per configured bucket, nothing wider.
    resource = json.dumps(statements[0][0]["Resource"])
    assert '"ImageBuckets"' in resource and "arn:${AWS::Partition}:s3:::${Joined}/*" in resource
    env = resources_of(translate({}), "AWS::Lambda::Function")["FaceFunction"]["Properties"]["Environment"]
    assert env["Variables"]["IMAGE_S3_BUCKETS"]["Fn::If"][0] == "HasImageBuckets"


def test_jwt_authorizer_guards_every_route_but_health() -> None:
    out = translate(
        {"JwtIssuer": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_abc", "JwtAudience": "c1"}
    )
    resources = out["Resources"]
    authorizer = resources["JwtAuthorizer"]
    assert authorizer["Condition"] == "HasJwt"
    assert authorizer["Properties"]["JwtConfiguration"] == {
        "Issuer": {"Ref": "JwtIssuer"},
        "Audience": {"Ref": "JwtAudience"},
    }
    route = resources["ProxyRoute"]["Properties"]
    assert route["RouteKey"] == "ANY /{proxy+}"
    assert route["AuthorizationType"] == {"Fn::If": ["HasJwt", "JWT", "NONE"]}
    assert route["AuthorizerId"] == {"Fn::If": ["HasJwt", {"Ref": "JwtAuthorizer"}, {"Ref": "AWS::NoValue"}]}
    api = next(iter(resources_of(out, "AWS::ApiGatewayV2::Api").values()))["Properties"]
    paths = api["Body"]["paths"]
    assert list(paths) == ["/api/v1/health"]  # SAM's only route: health, without security
    assert "security" not in paths["/api/v1/health"]["get"]
    assert resources["ProxyIntegration"]["Properties"]["IntegrationUri"] == {"Ref": "FaceFunctionAliaslive"}


@pytest.mark.parametrize("issuer", ["", "https://issuer.example.com/"], ids=["jwt-off", "jwt-on"])
def test_template_lints_with_the_authorizer_on_and_off(issuer: str, tmp_path: Path) -> None:
    text = TEMPLATE.read_text().replace(
        '  JwtIssuer:\n    Type: String\n    Default: ""',
        f'  JwtIssuer:\n    Type: String\n    Default: "{issuer}"',
    )
    assert (text != TEMPLATE.read_text()) == bool(issuer)
    path = tmp_path / "template.yaml"
    path.write_text(text)
    for extra in ((), ("--lint",)):
        result = sam_validate(path, *extra)
        assert result.returncode == 0, result.stdout + result.stderr


def test_gallery_buckets_are_read_only_and_only_those() -> None:
    out = translate({"GalleryBuckets": "galleries-a,galleries-b", "GalleryUri": "s3://galleries-a/staff.frg"})
    role = resources_of(out, "AWS::IAM::Role")["FaceFunctionRole"]
    statements = [
        p["Fn::If"][1]["PolicyDocument"]["Statement"]
        for p in role["Properties"]["Policies"]
        if isinstance(p, dict) and p.get("Fn::If", [None])[0] == "HasGalleryBuckets"
    ]
    assert len(statements) == 1
    assert [s["Action"] for s in statements[0]] == ["s3:GetObject", "s3:ListBucket"]
    assert all(s["Effect"] == "Allow" for s in statements[0])
    objects, buckets = (json.dumps(s["Resource"]) for s in statements[0])
    assert '"GalleryBuckets"' in objects and "${Joined}/*" in objects
    assert '"GalleryBuckets"' in buckets and "${Joined}/*" not in buckets
    function = resources_of(out, "AWS::Lambda::Function")["FaceFunction"]["Properties"]
    env = function["Environment"]["Variables"]
    assert env["GALLERY_S3_BUCKETS"]["Fn::If"][0] == "HasGalleryBuckets"
    assert env["GALLERY_URI"]["Fn::If"][0] == "HasGalleryUri"
    assert function["EphemeralStorage"] == {"Size": {"Ref": "EphemeralStorage"}}
