"""Creates one moto IAM user per reelay role, whose only policy is the
statements the synthesized stack gives that role, plus an `admin` user for
the test's own calls. Reads {"endpoint": URL, "roles": {name: [statement]}}
on stdin and prints {name: {"id": ..., "secret": ...}}.

SQS authorizes a batch call as its single action (a SendMessageBatch needs
sqs:SendMessage); moto checks the batch action's own name, so each allowed
single action is also granted under its batch name. Nothing else is added.
"""
import json
import sys

import boto3

BATCH_ALIASES = {
    "sqs:SendMessage": "sqs:SendMessageBatch",
    "sqs:DeleteMessage": "sqs:DeleteMessageBatch",
    "sqs:ChangeMessageVisibility": "sqs:ChangeMessageVisibilityBatch",
}


def moto_policy(statements):
    out = []
    for s in statements:
        s = dict(s)
        actions = list(s["Action"])
        actions += [BATCH_ALIASES[a] for a in actions if a in BATCH_ALIASES]
        s["Action"] = actions
        out.append(s)
    return {"Version": "2012-10-17", "Statement": out}


def main():
    spec = json.load(sys.stdin)
    iam = boto3.client(
        "iam",
        endpoint_url=spec["endpoint"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    roles = dict(spec["roles"])
    roles["admin"] = [{"Effect": "Allow", "Action": ["*"], "Resource": ["*"]}]
    keys = {}
    for name, statements in roles.items():
        user = f"reelay-{name}"
        iam.create_user(UserName=user)
        iam.put_user_policy(
            UserName=user,
            PolicyName=f"{name}-from-template",
            PolicyDocument=json.dumps(moto_policy(statements)),
        )
        k = iam.create_access_key(UserName=user)["AccessKey"]
        keys[name] = {"id": k["AccessKeyId"], "secret": k["SecretAccessKey"]}
    json.dump(keys, sys.stdout)


if __name__ == "__main__":
    main()
