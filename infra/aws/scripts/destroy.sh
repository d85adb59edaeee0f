#!/usr/bin/env bash
# Tears the stack down without hanging on protected work:
#   bash infra/aws/scripts/destroy.sh [STACK]   (default Reelay; AWS CLI v2, credentials for the account)
# A worker holding a message keeps ECS task scale-in protection, and managed
# termination protection keeps its instance; CloudFormation would wait on both
# (up to the protection's expiry) while deleting the service and the capacity
# provider. This script scales the services to 0, stops their tasks (StopTask
# ignores task protection; unfinished messages return to their queue and go
# to the DLQ with it), lifts scale-in protection from the fleet's instances,
# then runs `cdk destroy`. The bucket, its log bucket and the ECR repositories
# are kept (see infra/README.md, "Tear down").
set -euo pipefail
stack=${1:-Reelay}
out() { aws cloudformation describe-stacks --stack-name "$stack" \
  --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue" --output text; }
cluster=$(out ClusterName)
services=$(out WorkerServiceName)
router=$(out RouterServiceName 2>/dev/null || true)
[ -n "$router" ] && [ "$router" != None ] && services="$services $router"

for svc in $services; do
  echo "scaling $svc to 0"
  # Deregister autoscaling first, or it would put tasks back.
  aws application-autoscaling deregister-scalable-target --service-namespace ecs \
    --scalable-dimension ecs:service:DesiredCount --resource-id "service/$cluster/$svc" 2>/dev/null || true
  aws ecs update-service --cluster "$cluster" --service "$svc" --desired-count 0 >/dev/null
  for task in $(aws ecs list-tasks --cluster "$cluster" --service-name "$svc" --query 'taskArns[]' --output text); do
    echo "stopping $task"
    aws ecs stop-task --cluster "$cluster" --task "$task" --reason "reelay destroy" >/dev/null
  done
done

for asg in $(aws autoscaling describe-auto-scaling-groups \
  --query "AutoScalingGroups[?Tags[?Key=='aws:cloudformation:stack-name' && Value=='$stack']].AutoScalingGroupName" --output text); do
  ids=$(aws autoscaling describe-auto-scaling-groups --auto-scaling-group-names "$asg" \
    --query 'AutoScalingGroups[0].Instances[].InstanceId' --output text)
  if [ -n "$ids" ]; then
    echo "lifting scale-in protection in $asg: $ids"
    # shellcheck disable=SC2086 # one argument per instance id
    aws autoscaling set-instance-protection --auto-scaling-group-name "$asg" \
      --no-protected-from-scale-in --instance-ids $ids
  fi
  aws autoscaling update-auto-scaling-group --auto-scaling-group-name "$asg" --min-size 0 --desired-capacity 0
done

cd "$(dirname "${BASH_SOURCE[0]}")/.."
npx cdk destroy --force "$stack"
