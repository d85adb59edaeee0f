import * as cdk from 'aws-cdk-lib';
import * as appscaling from 'aws-cdk-lib/aws-applicationautoscaling';
import * as autoscaling from 'aws-cdk-lib/aws-autoscaling';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as cwActions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as ecr from 'aws-cdk-lib/aws-ecr';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct, IConstruct } from 'constructs';
import { checkLambdaAsset } from './lambda-asset';
import { Observability } from './observability';
import { LAMBDA_FONT, Settings } from './settings';

/**
 * Names of the variables the binary reads (src/config/env.rs). The tests parse
 * env.rs and fail if any name here is not in it.
 */
export const ENV = {
  bucket: 'REELAY_BUCKET',
  eventsQueueUrl: 'REELAY_EVENTS_QUEUE_URL',
  gpuQueueUrl: 'REELAY_GPU_QUEUE_URL',
  config: 'REELAY_CONFIG',
  device: 'REELAY_DEVICE',
  concurrency: 'REELAY_CONCURRENCY',
  prices: 'REELAY_PRICES',
  modelsDir: 'REELAY_MODELS_DIR',
  ffmpeg: 'REELAY_FFMPEG',
  font: 'REELAY_FONT',
  logFormat: 'REELAY_LOG_FORMAT',
  outputPrefixes: 'REELAY_OUTPUT_PREFIXES',
  queueVisibility: 'REELAY_QUEUE_VISIBILITY_SECONDS',
  queueMaxReceive: 'REELAY_QUEUE_MAX_RECEIVE_COUNT',
  s3Endpoint: 'REELAY_S3_ENDPOINT',
  s3AccessKeyId: 'REELAY_S3_ACCESS_KEY_ID',
  s3SecretAccessKey: 'REELAY_S3_SECRET_ACCESS_KEY',
  s3CredentialsSecret: 'REELAY_S3_CREDENTIALS_SECRET',
} as const;

/** reelay's own bookkeeping: claims, failure records, job state. */
export const INTERNAL_PREFIX = '_reelay/';
/** Task claims; a finished or released task deletes its claim. */
export const CLAIMS_PREFIX = '_reelay/claims/';
/** Intermediates between steps. */
export const WORK_PREFIX = 'work/';

/** Upload prefixes: the only ones with bucket notifications. */
export const UPLOAD_PREFIXES = ['sources/', 'jobs/'] as const;

export interface ReelayStackProps extends cdk.StackProps {
  readonly settings: Settings;
}

/** A checkov/cfn-lint suppression, always with the reason next to it. */
interface Skip {
  readonly id: string;
  readonly why: string;
}

/** Attaches checkov skips (and optional cfn-lint ignores) to a resource's Metadata. */
export function suppress(scope: IConstruct, checkov: Skip[], cfnLint: Skip[] = []): void {
  const res = (scope instanceof cdk.CfnResource ? scope : scope.node.defaultChild) as cdk.CfnResource | undefined;
  if (!res) throw new Error(`suppress: ${scope.node.path} has no CloudFormation resource`);
  if (checkov.length) {
    res.addMetadata('checkov', { skip: checkov.map((s) => ({ id: s.id, comment: s.why })) });
  }
  if (cfnLint.length) {
    res.addMetadata('cfn-lint', { config: { ignore_checks: cfnLint.map((s) => s.id) } });
    res.addMetadata('cfn-lint-why', Object.fromEntries(cfnLint.map((s) => [s.id, s.why])));
  }
}

/**
 * S3 access for one role, by key prefix: never `s3:*`, never `Resource: *`.
 * Reads include every prefix written (an existing output is HEADed before a
 * step runs, a redelivered task finds it and skips); only claims may be deleted.
 */
function s3Access(bucket: s3.IBucket, read: readonly string[], write: readonly string[]): iam.PolicyStatement[] {
  return [
    new iam.PolicyStatement({
      sid: 'ReadPrefixes',
      actions: ['s3:GetObject', 's3:GetObjectVersion'],
      resources: read.map((p) => bucket.arnForObjects(`${p}*`)),
    }),
    new iam.PolicyStatement({
      sid: 'WritePrefixes',
      // PutObject covers single and multipart puts (create/upload part/complete).
      actions: ['s3:PutObject', 's3:AbortMultipartUpload', 's3:ListMultipartUploadParts'],
      resources: write.map((p) => bucket.arnForObjects(`${p}*`)),
    }),
    new iam.PolicyStatement({
      sid: 'ListBucket',
      // Without ListBucket a HEAD on a missing key is 403, not 404, and the
      // "output already exists?" check can't tell absent from forbidden;
      // `reconcile` also lists. It reveals key names only, not contents.
      actions: ['s3:ListBucket'],
      resources: [bucket.bucketArn],
    }),
    new iam.PolicyStatement({
      sid: 'ReleaseClaims',
      actions: ['s3:DeleteObject'],
      resources: [bucket.arnForObjects(`${CLAIMS_PREFIX}*`)],
    }),
  ];
}

export class ReelayStack extends cdk.Stack {
  constructor(scope: Construct, id: string, props: ReelayStackProps) {
    super(scope, id, props);
    const s = props.settings;

    // ---- parameters: what an operator changes without touching code ----
    const pricesParam = new cdk.CfnParameter(this, 'DevicePrices', {
      type: 'String',
      // g4dn.xlarge on-demand $0.526/h = 0.000146/s; Lambda at 4 GiB = 0.0000667/s.
      default: 't4=0.000146,cpu=0.0000667',
      allowedPattern: '^[a-z0-9_]+=[0-9.eE-]+(,[a-z0-9_]+=[0-9.eE-]+)*$',
      description: 'Device prices in USD per second, written into audit records (REELAY_PRICES)',
    });
    const modelsParam = new cdk.CfnParameter(this, 'ModelsDir', {
      type: 'String',
      default: '/opt/reelay/models',
      description: 'Folder inside the GPU worker image that holds the ONNX models (REELAY_MODELS_DIR)',
    });
    const maxFleetParam = new cdk.CfnParameter(this, 'MaxFleetSize', {
      type: 'Number',
      default: 4,
      minValue: 1,
      maxValue: 100,
      description: 'Most g4dn instances (and worker tasks, one GPU each) running at once',
    });
    const backlogParam = new cdk.CfnParameter(this, 'BacklogPerTask', {
      type: 'Number',
      default: 2,
      minValue: 1,
      description: 'Target visible gpu-queue messages per running worker task',
    });
    const imageTagParam = new cdk.CfnParameter(this, 'ImageTag', {
      type: 'String',
      default: '0.1.0',
      allowedPattern: '^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$',
      description: 'Tag of the images in the stack ECR repositories (tags are immutable)',
    });
    const alarmEmailParam = new cdk.CfnParameter(this, 'AlarmEmail', {
      type: 'String',
      default: '',
      description: 'Email for dead-letter alarms; empty: no subscription',
    });
    // R2 as the bucket: reelay reads and writes it through its S3 endpoint with
    // keys of its own (from the secret), while SQS keeps the task's AWS role.
    const r2EndpointParam = new cdk.CfnParameter(this, 'R2Endpoint', {
      type: 'String',
      default: '',
      allowedPattern: '^$|^https://[A-Za-z0-9.-]+(:[0-9]+)?/?$',
      description: 'R2 S3 endpoint, https://ACCOUNT.r2.cloudflarestorage.com; empty: the stack S3 bucket',
    });
    const r2BucketParam = new cdk.CfnParameter(this, 'R2Bucket', {
      type: 'String',
      default: '',
      allowedPattern: '^$|^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$',
      description: 'R2 bucket reelay works on (with R2Endpoint and R2KeysName); empty: the stack S3 bucket',
    });
    const r2SecretParam = new cdk.CfnParameter(this, 'R2KeysName', {
      type: 'String',
      default: '',
      allowedPattern: '^$|^[A-Za-z0-9/_+=.@-]{1,512}$',
      description: 'Name of the Secrets Manager secret (this account and region) with JSON access_key_id and secret_access_key of an R2 API token',
    });
    const useR2 = new cdk.CfnCondition(this, 'UseR2', {
      expression: cdk.Fn.conditionNot(cdk.Fn.conditionEquals(r2BucketParam.valueAsString, '')),
    });
    new cdk.CfnRule(this, 'R2NeedsEndpointAndSecret', {
      ruleCondition: cdk.Fn.conditionNot(cdk.Fn.conditionEquals(r2BucketParam.valueAsString, '')),
      assertions: [
        {
          assert: cdk.Fn.conditionNot(cdk.Fn.conditionEquals(r2EndpointParam.valueAsString, '')),
          assertDescription: 'R2Bucket needs R2Endpoint (https://ACCOUNT.r2.cloudflarestorage.com)',
        },
        {
          assert: cdk.Fn.conditionNot(cdk.Fn.conditionEquals(r2SecretParam.valueAsString, '')),
          assertDescription: 'R2Bucket needs R2KeysName (a secret with access_key_id and secret_access_key)',
        },
      ],
    });
    // Only when the stack creates the bucket (an unused condition is a lint warning).
    const bucketNameFor = () => {
      const bucketNameParam = new cdk.CfnParameter(this, 'BucketName', {
        type: 'String',
        default: '',
        allowedPattern: '^$|^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$',
        description: 'Name of the media bucket; empty: reelay-ACCOUNT-REGION',
      });
      const hasBucketName = new cdk.CfnCondition(this, 'HasBucketName', {
        expression: cdk.Fn.conditionNot(cdk.Fn.conditionEquals(bucketNameParam.valueAsString, '')),
      });
      return cdk.Token.asString(
        cdk.Fn.conditionIf(
          hasBucketName.logicalId,
          bucketNameParam.valueAsString,
          cdk.Fn.sub('reelay-${AWS::AccountId}-${AWS::Region}'),
        ),
      );
    };
    const hasAlarmEmail = new cdk.CfnCondition(this, 'HasAlarmEmail', {
      expression: cdk.Fn.conditionNot(cdk.Fn.conditionEquals(alarmEmailParam.valueAsString, '')),
    });
    const retention = s.logRetentionDays as logs.RetentionDays;

    // ---- alarms go to one topic ----
    // A customer-managed key: the AWS-managed SNS key's policy does not let
    // CloudWatch publish, so alarm emails under it would never be sent.
    const alarmKey = new kms.Key(this, 'AlarmTopicKey', {
      description: 'reelay alarm topic: CloudWatch alarms publish through it',
      enableKeyRotation: true,
      removalPolicy: cdk.RemovalPolicy.DESTROY,
      pendingWindow: cdk.Duration.days(7),
    });
    alarmKey.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'CloudWatchAlarmsPublish',
        principals: [new iam.ServicePrincipal('cloudwatch.amazonaws.com')],
        actions: ['kms:Decrypt', 'kms:GenerateDataKey*'],
        resources: ['*'], // in a key policy, "*" is this key
        conditions: { StringEquals: { 'aws:SourceAccount': cdk.Aws.ACCOUNT_ID } },
      }),
    );
    const alarmTopic = new sns.Topic(this, 'AlarmTopic', {
      displayName: 'reelay alarms',
      masterKey: alarmKey,
      enforceSSL: true,
    });
    const emailSub = new sns.CfnSubscription(this, 'AlarmEmailSubscription', {
      topicArn: alarmTopic.topicArn,
      protocol: 'email',
      endpoint: alarmEmailParam.valueAsString,
    });
    emailSub.cfnOptions.condition = hasAlarmEmail;
    alarmTopic.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'CloudWatchAlarms',
        principals: [new iam.ServicePrincipal('cloudwatch.amazonaws.com')],
        actions: ['sns:Publish'],
        resources: [alarmTopic.topicArn],
        conditions: { StringEquals: { 'aws:SourceAccount': cdk.Aws.ACCOUNT_ID } },
      }),
    );

    // ---- queues ----
    const routerTimeout = cdk.Duration.seconds(s.lambdaTimeoutSeconds);
    const mkQueue = (name: string, visibility: cdk.Duration, maxReceiveCount: number) => {
      const dlq = new sqs.Queue(this, `${name}Dlq`, {
        encryption: sqs.QueueEncryption.SQS_MANAGED,
        enforceSSL: true,
        retentionPeriod: cdk.Duration.days(14),
      });
      const queue = new sqs.Queue(this, `${name}Queue`, {
        encryption: sqs.QueueEncryption.SQS_MANAGED,
        enforceSSL: true,
        visibilityTimeout: visibility,
        retentionPeriod: cdk.Duration.days(4),
        deadLetterQueue: { queue: dlq, maxReceiveCount },
      });
      const alarm = new cloudwatch.Alarm(this, `${name}DlqAlarm`, {
        alarmDescription: `reelay: messages in the ${name.toLowerCase()} dead-letter queue; see _reelay/failures/ in the bucket`,
        metric: dlq.metricApproximateNumberOfMessagesVisible({ period: cdk.Duration.minutes(1), statistic: 'Maximum' }),
        threshold: 1,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
      alarm.addAlarmAction(new cwActions.SnsAction(alarmTopic));
      for (const q of [queue, dlq]) {
        suppress(q, [
          { id: 'CKV_AWS_27', why: 'encrypted with SSE-SQS (SqsManagedSseEnabled); the check only knows KMS, and S3 cannot notify a queue under the AWS-managed KMS key' },
        ]);
      }
      return { queue, dlq, alarm, visibility, maxReceiveCount };
    };
    // Lambda's rule: visibility >= 6x the function timeout, so retries of a
    // throttled batch don't redeliver while a copy still runs.
    const events = mkQueue('Events', cdk.Duration.seconds(6 * s.lambdaTimeoutSeconds), s.eventsMaxReceiveCount);
    // The worker heartbeats (extends visibility) on long tasks; this is the first lease.
    const gpu = mkQueue('Gpu', cdk.Duration.seconds(s.gpuTaskTimeoutSeconds), s.gpuMaxReceiveCount);
    // The consumer's own queue settings, so reelay's failure records count
    // tries ("dead-lettered" or not) and size leases as the queue does.
    const queueEnv = (q: { visibility: cdk.Duration; maxReceiveCount: number }): Record<string, string> => ({
      [ENV.queueVisibility]: String(q.visibility.toSeconds()),
      [ENV.queueMaxReceive]: String(q.maxReceiveCount),
    });

    // ---- buckets ----
    const bucket = s.existingBucket
      ? this.existingBucket(s.existingBucket, events.queue)
      : this.newBucket(bucketNameFor(), events.queue, s);

    const s3Url = cdk.Token.asString(
      cdk.Fn.conditionIf(
        useR2.logicalId,
        cdk.Fn.join('', ['s3://', r2BucketParam.valueAsString]),
        cdk.Fn.join('', ['s3://', bucket.bucketName]),
      ),
    );
    // Written once: the env var every reelay process checks outputs against,
    // and the IAM write scope below.
    const outputPrefixes = s.outputPrefixes;
    const commonEnv: Record<string, string> = {
      [ENV.bucket]: s3Url,
      [ENV.outputPrefixes]: outputPrefixes.join(','),
      // Empty unless R2: reelay then uses the default S3 endpoint and the task's role.
      [ENV.s3Endpoint]: cdk.Token.asString(cdk.Fn.conditionIf(useR2.logicalId, r2EndpointParam.valueAsString, '')),
      [ENV.s3CredentialsSecret]: cdk.Token.asString(cdk.Fn.conditionIf(useR2.logicalId, r2SecretParam.valueAsString, '')),
      [ENV.eventsQueueUrl]: events.queue.queueUrl,
      [ENV.gpuQueueUrl]: gpu.queue.queueUrl,
      [ENV.prices]: pricesParam.valueAsString,
      [ENV.logFormat]: 'json',
    };

    // ---- router: reads uploads and its own artifacts, writes work/exports/_reelay ----
    const written = [WORK_PREFIX, ...outputPrefixes, INTERNAL_PREFIX];
    const routerRead = [...UPLOAD_PREFIXES, ...written];
    const routerWrite = written;
    const routerPolicy = new iam.ManagedPolicy(this, 'RouterAccess', {
      description: 'reelay router: S3 by prefix, send to gpu and events queues',
      statements: [
        ...s3Access(bucket, routerRead, routerWrite),
        new iam.PolicyStatement({
          sid: 'SendSteps',
          // GPU steps go to gpu; CPU steps it defers go back to events.
          actions: ['sqs:SendMessage', 'sqs:GetQueueAttributes', 'sqs:GetQueueUrl'],
          resources: [gpu.queue.queueArn, events.queue.queueArn],
        }),
      ],
    });

    // Only with R2: read the secret holding reelay's R2 keys.
    const r2SecretPolicy = new iam.ManagedPolicy(this, 'R2CredentialsAccess', {
      description: 'reelay: read the R2 API token secret (only when R2Bucket is set)',
      statements: [
        new iam.PolicyStatement({
          sid: 'ReadR2Credentials',
          actions: ['secretsmanager:GetSecretValue'],
          // Secrets Manager appends 6 random characters to a secret's name in its ARN.
          resources: [cdk.Fn.sub('arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:${R2KeysName}-??????')],
        }),
      ],
    });
    (r2SecretPolicy.node.defaultChild as cdk.CfnResource).cfnOptions.condition = useR2;

    // natGateways 0: no NAT, the fleet gets public addresses (no inbound rule
    // lets anything in), so an idle stack costs nothing by the hour.
    const noNat = s.natGateways === 0;
    const fleetSubnets = noNat ? ec2.SubnetType.PUBLIC : ec2.SubnetType.PRIVATE_WITH_EGRESS;
    const vpc = new ec2.Vpc(this, 'Vpc', {
      maxAzs: 2,
      natGateways: s.natGateways,
      restrictDefaultSecurityGroup: false,
      subnetConfiguration: [
        { name: 'public', subnetType: ec2.SubnetType.PUBLIC, cidrMask: noNat ? 20 : 24, mapPublicIpOnLaunch: false },
        ...(noNat ? [] : [{ name: 'fleet', subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS, cidrMask: 20 }]),
      ],
      // Video bytes to and from S3 bypass the NAT (no per-GB NAT charge).
      gatewayEndpoints: { S3: { service: ec2.GatewayVpcEndpointAwsService.S3 } },
    });
    const flowLogGroup = new logs.LogGroup(this, 'VpcFlowLogs', { retention, removalPolicy: cdk.RemovalPolicy.DESTROY });
    suppress(flowLogGroup, [{ id: 'CKV_AWS_158', why: 'flow logs hold addresses and ports only; CloudWatch encrypts at rest by default' }]);
    vpc.addFlowLog('FlowLog', {
      destination: ec2.FlowLogDestination.toCloudWatchLogs(flowLogGroup),
      trafficType: ec2.FlowLogTrafficType.REJECT,
    });
    suppress(vpc, [
      { id: 'CKV2_AWS_12', why: 'nothing uses the default security group; restricting it needs a custom-resource Lambda' },
    ]);

    const cluster = new ecs.Cluster(this, 'Cluster', {
      vpc,
      containerInsightsV2: ecs.ContainerInsights.ENABLED, // RunningTaskCount for backlog-per-task scaling
    });

    const repo = (id: string, description: string) => {
      const r = new ecr.Repository(this, id, {
        imageScanOnPush: true,
        imageTagMutability: ecr.TagMutability.IMMUTABLE,
        encryption: ecr.RepositoryEncryption.KMS,
        removalPolicy: cdk.RemovalPolicy.RETAIN,
        lifecycleRules: [{ description: 'keep the last 10 images', maxImageCount: 10 }],
      });
      new cdk.CfnOutput(this, `${id}Uri`, { value: r.repositoryUri, description });
      return r;
    };
    const workerRepo = repo('WorkerRepository', 'Push containers/gpu-worker.Dockerfile here');

    let routerFunction: lambda.Function | undefined;
    let routerService: ecs.FargateService | undefined;
    if (s.router === 'lambda') {
      const asset = checkLambdaAsset(s.lambdaAssetDir, s.lambdaArch, LAMBDA_FONT);
      const logGroup = new logs.LogGroup(this, 'RouterLogs', { retention, removalPolicy: cdk.RemovalPolicy.DESTROY });
      suppress(logGroup, [{ id: 'CKV_AWS_158', why: 'logs carry keys and ids, no secrets; CloudWatch encrypts at rest by default' }]);
      const role = new iam.Role(this, 'RouterRole', {
        assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
        managedPolicies: [routerPolicy],
      });
      logGroup.grantWrite(role);
      r2SecretPolicy.attachToRole(role);
      const env: Record<string, string> = {
        ...commonEnv,
        ...queueEnv(events),
        [ENV.device]: 'cpu',
        [ENV.concurrency]: String(s.routerBatchSize),
      };
      // Shipped only if package-lambda.sh put them in the asset.
      env[ENV.ffmpeg] = '/var/task/ffmpeg'; // the asset check refuses an asset without it
      if (asset.config) env[ENV.config] = '/var/task/reelay.toml';
      if (asset.font) env[ENV.font] = `/var/task/${LAMBDA_FONT}`;
      routerFunction = new lambda.Function(this, 'Router', {
        description: 'reelay router: plans jobs, runs CPU steps, sends GPU steps',
        runtime: lambda.Runtime.PROVIDED_AL2023,
        architecture: s.lambdaArch === 'arm64' ? lambda.Architecture.ARM_64 : lambda.Architecture.X86_64,
        handler: 'bootstrap',
        code: lambda.Code.fromAsset(s.lambdaAssetDir),
        timeout: routerTimeout,
        memorySize: s.lambdaMemoryMiB,
        ephemeralStorageSize: cdk.Size.gibibytes(10), // FFmpeg temp files
        // No reserved concurrency: a new account's quota can be 10, and Lambda
        // keeps 100 unreserved, so reserving any fails the deploy there. The
        // event source's maximum concurrency bounds the router instead.
        environment: env,
        logGroup,
        role,
      });
      routerFunction.addEventSource(
        new SqsEventSource(events.queue, {
          batchSize: s.routerBatchSize,
          maxBatchingWindow: cdk.Duration.seconds(s.routerBatchingWindowSeconds),
          reportBatchItemFailures: true,
          // Bounds the router without reserved concurrency; pollers never
          // exceed it, so no receive is throttled into a false DLQ.
          maxConcurrency: Math.max(2, s.routerConcurrency),
        }),
      );
      suppress(routerFunction, [
        { id: 'CKV_AWS_116', why: 'invoked by an SQS event source mapping; failures go to the queue redrive DLQ, a function DLQ only serves async invokes' },
        { id: 'CKV_AWS_115', why: "no reserved concurrency on purpose: a new account's quota can be 10 with 100 kept unreserved, so any reservation fails the deploy; the event source's MaximumConcurrency bounds the router" },
        { id: 'CKV_AWS_117', why: 'talks only to S3 and SQS over TLS with IAM auth; a VPC adds ENI cold starts and NAT cost, no isolation' },
        { id: 'CKV_AWS_173', why: 'environment holds queue URLs, bucket name and prices, no secrets' },
      ], [
        { id: 'W3005', why: 'CDK adds DependsOn on the role policy so permissions exist before the first poll; the extra role entry is harmless' },
      ]);
      new cdk.CfnOutput(this, 'RouterFunctionName', { value: routerFunction.functionName });
      new cdk.CfnOutput(this, 'RouterLogGroup', { value: logGroup.logGroupName });
    } else {
      routerService = this.fargateRouter({
        cluster,
        vpc,
        policies: [routerPolicy, r2SecretPolicy],
        env: { ...commonEnv, ...queueEnv(events) },
        eventsQueue: events.queue,
        retention,
        imageTag: imageTagParam.valueAsString,
        subnets: fleetSubnets,
        s,
        repo,
      });
    }

    // ---- GPU fleet: ECS on g4dn (T4) behind a capacity provider ----
    const fleetSg = new ec2.SecurityGroup(this, 'FleetSecurityGroup', {
      vpc,
      description: 'reelay GPU fleet: no inbound; HTTPS out to AWS APIs only',
      allowAllOutbound: false,
    });
    fleetSg.addEgressRule(ec2.Peer.anyIpv4(), ec2.Port.tcp(443), 'HTTPS to S3, SQS, ECR, ECS, CloudWatch');
    const instanceRole = new iam.Role(this, 'FleetInstanceRole', {
      assumedBy: new iam.ServicePrincipal('ec2.amazonaws.com'),
    });
    const launchTemplate = new ec2.LaunchTemplate(this, 'FleetLaunchTemplate', {
      // The instance types come from the mixed-instances overrides below.
      machineImage: ecs.EcsOptimizedImage.amazonLinux2023(ecs.AmiHardwareType.GPU),
      userData: ec2.UserData.forLinux(),
      role: instanceRole,
      securityGroup: fleetSg,
      associatePublicIpAddress: noNat ? true : undefined,
      requireImdsv2: true,
      httpPutResponseHopLimit: 1, // containers (bridge mode) can't reach instance credentials
      blockDevices: [
        {
          deviceName: '/dev/xvda',
          volume: ec2.BlockDeviceVolume.ebs(100, { encrypted: true, volumeType: ec2.EbsDeviceVolumeType.GP3, deleteOnTermination: true }),
        },
      ],
    });
    // One GPU per instance type (T4, A10G, L4), in the order given: the first
    // that has capacity is used. The task reserves 3840 CPU units and 12 GiB,
    // which each .xlarge fits.
    if (noNat) {
      suppress(launchTemplate, [
        { id: 'CKV_AWS_88', why: 'natGateways=0 chosen: instances reach AWS APIs by their public address; the security group admits nothing inbound' },
      ]);
    }
    const fleetGroup = (id: string, spot: boolean) =>
      new autoscaling.AutoScalingGroup(this, id, {
        vpc,
        vpcSubnets: { subnetType: fleetSubnets },
        mixedInstancesPolicy: {
          launchTemplate,
          launchTemplateOverrides: s.gpuInstanceTypes.map((t) => ({ instanceType: new ec2.InstanceType(t) })),
          instancesDistribution: spot
            ? {
                onDemandBaseCapacity: 0,
                onDemandPercentageAboveBaseCapacity: 0,
                spotAllocationStrategy: autoscaling.SpotAllocationStrategy.CAPACITY_OPTIMIZED_PRIORITIZED,
              }
            : {
                onDemandBaseCapacity: 0,
                onDemandPercentageAboveBaseCapacity: 100,
                onDemandAllocationStrategy: autoscaling.OnDemandAllocationStrategy.PRIORITIZED,
              },
        },
        minCapacity: 0,
        maxCapacity: maxFleetParam.valueAsNumber,
        // Required by managed termination protection: ECS decides which instances may go.
        newInstancesProtectedFromScaleIn: true,
      });
    const capacityFor = (id: string, group: autoscaling.AutoScalingGroup) => {
      const cp = new ecs.AsgCapacityProvider(this, id, {
        autoScalingGroup: group,
        enableManagedScaling: true,
        enableManagedTerminationProtection: true,
        enableManagedDraining: true,
        targetCapacityPercent: 100,
        minimumScalingStepSize: 1,
        maximumScalingStepSize: 10,
        instanceWarmupPeriod: 180,
      });
      cluster.addAsgCapacityProvider(cp);
      return cp;
    };
    const capacityProvider = capacityFor('GpuCapacity', fleetGroup('GpuFleet', false));
    // Spot: tasks go 3:1 to Spot, and the first task always to on-demand, so a
    // Spot shortage slows the fleet but never stalls it.
    const capacityStrategy: ecs.CapacityProviderStrategy[] =
      s.gpuCapacity === 'spot'
        ? [
            { capacityProvider: capacityFor('GpuSpotCapacity', fleetGroup('GpuSpotFleet', true)).capacityProviderName, weight: 3 },
            { capacityProvider: capacityProvider.capacityProviderName, base: 1, weight: 1 },
          ]
        : [{ capacityProvider: capacityProvider.capacityProviderName, weight: 1 }];
    suppress(instanceRole.node.findChild('DefaultPolicy'), [
      { id: 'CKV_AWS_111', why: "CDK's ECS container-instance policy: registration is scoped to this cluster, ecs:Poll is conditioned on it; ecr:GetAuthorizationToken and ecs:DiscoverPollEndpoint accept only '*'" },
    ]);

    const workerLogs = new logs.LogGroup(this, 'WorkerLogs', { retention, removalPolicy: cdk.RemovalPolicy.DESTROY });
    suppress(workerLogs, [{ id: 'CKV_AWS_158', why: 'logs carry keys and ids, no secrets; CloudWatch encrypts at rest by default' }]);

    const workerRole = new iam.Role(this, 'WorkerTaskRole', {
      assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com'),
      description: 'reelay GPU worker task',
    });
    workerRole.addManagedPolicy(
      new iam.ManagedPolicy(this, 'WorkerAccess', {
        description: 'reelay GPU worker: S3 by prefix, gpu queue consumer, step sender, task protection',
        statements: [
          ...s3Access(bucket, [...UPLOAD_PREFIXES, ...written], written),
          new iam.PolicyStatement({
            sid: 'ConsumeGpuQueue',
            actions: ['sqs:ReceiveMessage', 'sqs:DeleteMessage', 'sqs:ChangeMessageVisibility', 'sqs:GetQueueAttributes', 'sqs:GetQueueUrl'],
            resources: [gpu.queue.queueArn],
          }),
          new iam.PolicyStatement({
            sid: 'SendSteps',
            actions: ['sqs:SendMessage'],
            resources: [gpu.queue.queueArn, events.queue.queueArn],
          }),
          new iam.PolicyStatement({
            sid: 'TaskScaleInProtection',
            // The worker calls the ECS agent's task-protection endpoint, which
            // acts with the task role, while it holds a message.
            actions: ['ecs:UpdateTaskProtection', 'ecs:GetTaskProtection'],
            resources: [
              cdk.Fn.join('', ['arn:', cdk.Aws.PARTITION, ':ecs:', cdk.Aws.REGION, ':', cdk.Aws.ACCOUNT_ID, ':task/', cluster.clusterName, '/*']),
            ],
          }),
        ],
      }),
    );

    const workerTask = new ecs.Ec2TaskDefinition(this, 'WorkerTask', {
      networkMode: ecs.NetworkMode.BRIDGE,
      taskRole: workerRole,
      volumes: [{ name: 'scratch', dockerVolumeConfiguration: { scope: ecs.Scope.TASK, driver: 'local' } }],
    });
    r2SecretPolicy.attachToRole(workerRole);
    const workerEnv: Record<string, string> = {
      ...commonEnv,
      ...queueEnv(gpu),
      [ENV.device]: 'cuda',
      [ENV.concurrency]: '1', // one T4 per task
      [ENV.modelsDir]: modelsParam.valueAsString,
    };
    if (s.containerConfigPath) workerEnv[ENV.config] = s.containerConfigPath;
    const worker = workerTask.addContainer('worker', {
      image: ecs.ContainerImage.fromEcrRepository(workerRepo, imageTagParam.valueAsString),
      command: ['work', '--device', 'cuda'],
      gpuCount: 1,
      cpu: 3840,
      memoryReservationMiB: 12288,
      essential: true,
      readonlyRootFilesystem: true,
      environment: workerEnv,
      stopTimeout: cdk.Duration.seconds(120),
      // ECS ignores the image's HEALTHCHECK: this is the one that runs. `doctor
      // --quick` fails when the driver, the GPU, a CUDA library, ONNX Runtime,
      // FFmpeg, the font or a model's sha256 is wrong, without using the GPU.
      healthCheck: {
        command: ['CMD', '/opt/reelay/bin/reelay', 'doctor', '--quick', '--device', 'cuda'],
        interval: cdk.Duration.seconds(60),
        timeout: cdk.Duration.seconds(30),
        startPeriod: cdk.Duration.seconds(120),
        retries: 3,
      },
      logging: ecs.LogDrivers.awsLogs({ streamPrefix: 'worker', logGroup: workerLogs }),
    });
    worker.addMountPoints({ containerPath: '/tmp', sourceVolume: 'scratch', readOnly: false });

    const workerService = new ecs.Ec2Service(this, 'WorkerService', {
      cluster,
      taskDefinition: workerTask,
      // Explicit 0: a deploy resets the count, and protected tasks keep running
      // until they clear protection; autoscaling brings the rest back.
      desiredCount: 0,
      minHealthyPercent: 0,
      maxHealthyPercent: 100,
      capacityProviderStrategies: capacityStrategy,
      enableECSManagedTags: true,
      propagateTags: ecs.PropagatedTagSource.SERVICE,
      circuitBreaker: { enable: true, rollback: true },
    });

    // ---- worker autoscaling: backlog per task, scale to zero ----
    const scaling = workerService.autoScaleTaskCount({ minCapacity: 0, maxCapacity: maxFleetParam.valueAsNumber });
    const scalableTarget = scaling.node.children.find((c) => c instanceof appscaling.ScalableTarget) as appscaling.ScalableTarget;
    const visibleStat = {
      metric: {
        namespace: 'AWS/SQS',
        metricName: 'ApproximateNumberOfMessagesVisible',
        dimensions: [{ name: 'QueueName', value: gpu.queue.queueName }],
      },
      stat: 'Maximum',
    };
    const tasksStat = {
      metric: {
        namespace: 'ECS/ContainerInsights',
        metricName: 'RunningTaskCount',
        dimensions: [
          { name: 'ClusterName', value: cluster.clusterName },
          { name: 'ServiceName', value: workerService.serviceName },
        ],
      },
      stat: 'Average',
    };
    new appscaling.CfnScalingPolicy(this, 'BacklogPerTaskScaling', {
      policyName: 'reelay-gpu-backlog-per-task',
      policyType: 'TargetTrackingScaling',
      scalingTargetId: scalableTarget.scalableTargetId,
      targetTrackingScalingPolicyConfiguration: {
        targetValue: backlogParam.valueAsNumber,
        scaleOutCooldown: 30, // fast out: a T4 costs less than a waiting export
        scaleInCooldown: 300,
        customizedMetricSpecification: {
          metrics: [
            { id: 'visible', metricStat: visibleStat, returnData: false },
            { id: 'tasks', metricStat: tasksStat, returnData: false },
            {
              id: 'backlogPerTask',
              label: 'gpu queue visible messages per running worker task',
              // With no task running the backlog itself is the signal.
              expression: 'IF(FILL(tasks, 0) > 0, visible / FILL(tasks, 0), visible)',
              returnData: true,
            },
          ],
        },
      },
    });
    // Target tracking multiplies by current capacity, so from 0 it never
    // moves: a step policy wakes the service when work arrives and no task is
    // even wanted. It sets exactly 1 (never adds), and only while the desired
    // count is 0, so the minutes an instance takes to boot cannot stack one
    // task per alarm period; target tracking sizes the fleet from there.
    scaling.scaleOnMetric('WakeFromZero', {
      metric: new cloudwatch.MathExpression({
        expression: 'IF(FILL(desired, 0) < 1, visible, 0)',
        usingMetrics: {
          visible: gpu.queue.metricApproximateNumberOfMessagesVisible({ statistic: 'Maximum', period: cdk.Duration.minutes(1) }),
          desired: new cloudwatch.Metric({
            namespace: tasksStat.metric.namespace,
            metricName: 'DesiredTaskCount',
            dimensionsMap: { ClusterName: cluster.clusterName, ServiceName: workerService.serviceName },
            statistic: 'Maximum',
            period: cdk.Duration.minutes(1),
          }),
        },
        period: cdk.Duration.minutes(1),
        label: 'gpu backlog while no worker is wanted',
      }),
      adjustmentType: appscaling.AdjustmentType.EXACT_CAPACITY,
      scalingSteps: [
        { lower: 1, change: 1 },
        { lower: 1000, change: 1 },
      ],
      evaluationPeriods: 1,
      cooldown: cdk.Duration.seconds(60),
    });

    // ---- optional: the identity the Cloudflare R2 bridge signs SendMessage with ----
    if (s.r2Bridge) {
      const group = new iam.Group(this, 'R2BridgeGroup');
      group.addToPolicy(
        new iam.PolicyStatement({
          sid: 'ForwardR2Notifications',
          actions: ['sqs:SendMessage'],
          resources: [events.queue.queueArn],
        }),
      );
      // Access keys are created by hand (README), so no secret ever sits in the template.
      const user = new iam.User(this, 'R2BridgeUser', { groups: [group] });
      new cdk.CfnOutput(this, 'R2BridgeUserName', { value: user.userName });
    }

    // ---- alarms and the dashboard ----
    const watched = [{ label: 'Worker', clusterName: cluster.clusterName, serviceName: workerService.serviceName }];
    if (routerService) watched.push({ label: 'Router', clusterName: cluster.clusterName, serviceName: routerService.serviceName });
    const obs = new Observability(this, 'Observability', {
      topic: alarmTopic,
      events: events.queue,
      gpu: gpu.queue,
      dlqs: [events.dlq, gpu.dlq],
      routerFunction,
      services: watched,
      // A gpu message not received within its first lease plus an instance
      // boot means no worker is running at all.
      gpuStallSeconds: Math.max(900, s.gpuTaskTimeoutSeconds),
      eventsStallSeconds: 2 * 6 * s.lambdaTimeoutSeconds,
    });
    new cdk.CfnOutput(this, 'DashboardName', { value: obs.dashboard.dashboardName });

    // ---- cost allocation: activate these tag keys once in Billing ----
    cdk.Tags.of(this).add('reelay:app', 'reelay');
    cdk.Tags.of(this).add('reelay:stack', this.stackName);

    // ---- outputs ----
    new cdk.CfnOutput(this, 'BucketNameOutput', { key: 'Bucket', value: bucket.bucketName, description: 'Upload to sources/ and jobs/' });
    new cdk.CfnOutput(this, 'EventsQueueUrl', { value: events.queue.queueUrl });
    new cdk.CfnOutput(this, 'GpuQueueUrl', { value: gpu.queue.queueUrl });
    new cdk.CfnOutput(this, 'EventsDlqUrl', { value: events.dlq.queueUrl });
    new cdk.CfnOutput(this, 'GpuDlqUrl', { value: gpu.dlq.queueUrl });
    new cdk.CfnOutput(this, 'ClusterName', { value: cluster.clusterName });
    new cdk.CfnOutput(this, 'WorkerServiceName', { value: workerService.serviceName });
    new cdk.CfnOutput(this, 'WorkerLogGroup', { value: workerLogs.logGroupName });
    new cdk.CfnOutput(this, 'AlarmTopicArn', { value: alarmTopic.topicArn });
  }

  /** The media bucket the stack owns, notifying the events queue for uploads. */
  private newBucket(bucketName: string, eventsQueue: sqs.Queue, s: Settings): s3.IBucket {
    const accessLogs = new s3.Bucket(this, 'AccessLogsBucket', {
      encryption: s3.BucketEncryption.S3_MANAGED,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      versioned: true,
      lifecycleRules: [{ expiration: cdk.Duration.days(90), noncurrentVersionExpiration: cdk.Duration.days(1) }],
      removalPolicy: cdk.RemovalPolicy.RETAIN,
    });
    suppress(accessLogs, [
      { id: 'CKV_AWS_18', why: 'this is the access-log target; logging it into itself would loop' },
      { id: 'CKV_AWS_144', why: 'access logs are operational, not worth a second region' },
      { id: 'CKV_AWS_145', why: 'S3 server access logging only delivers to SSE-S3 buckets, not SSE-KMS' },
    ]);

    const lifecycleRules: s3.LifecycleRule[] = [
      {
        id: 'abort-incomplete-multipart',
        // A worker killed mid-upload leaves parts that are billed until aborted.
        abortIncompleteMultipartUploadAfter: cdk.Duration.days(2),
        noncurrentVersionExpiration: cdk.Duration.days(30),
      },
    ];
    if (s.workExpiryDays > 0) {
      lifecycleRules.push({ id: 'expire-work', prefix: 'work/', expiration: cdk.Duration.days(s.workExpiryDays) });
    }
    const bucket = new s3.Bucket(this, 'Bucket', {
      bucketName,
      encryption: s3.BucketEncryption.S3_MANAGED,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      minimumTLSVersion: 1.2,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      versioned: true,
      serverAccessLogsBucket: accessLogs,
      serverAccessLogsPrefix: 'media/',
      lifecycleRules,
      removalPolicy: cdk.RemovalPolicy.RETAIN,
    });
    suppress(bucket, [
      { id: 'CKV_AWS_144', why: 'every artifact is reproducible from sources/ and jobs/; replication would double media storage' },
      { id: 'CKV_AWS_145', why: 'SSE-S3: SSE-KMS bills a KMS call per GET/PUT of every frame-sized object and needs key grants for S3->SQS' },
    ]);

    // Notifications on the bucket itself (no custom-resource Lambda). The queue
    // policy names the bucket by its ARN built from the name, so the bucket can
    // depend on the policy without a cycle: S3 checks the policy at creation.
    const bucketArnFromName = cdk.Fn.join('', ['arn:', cdk.Aws.PARTITION, ':s3:::', bucketName]);
    eventsQueue.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'BucketNotifications',
        principals: [new iam.ServicePrincipal('s3.amazonaws.com')],
        actions: ['sqs:SendMessage'],
        resources: [eventsQueue.queueArn],
        conditions: {
          ArnEquals: { 'aws:SourceArn': bucketArnFromName },
          StringEquals: { 'aws:SourceAccount': cdk.Aws.ACCOUNT_ID },
        },
      }),
    );
    const cfnBucket = bucket.node.defaultChild as s3.CfnBucket;
    cfnBucket.notificationConfiguration = {
      queueConfigurations: UPLOAD_PREFIXES.map((prefix) => ({
        event: 's3:ObjectCreated:*',
        queue: eventsQueue.queueArn,
        filter: { s3Key: { rules: [{ name: 'prefix', value: prefix }] } },
      })),
    };
    cfnBucket.addResourceDependency(eventsQueue.node.findChild('Policy').node.defaultChild as cdk.CfnResource);

    return bucket;
  }

  /**
   * A bucket that already exists: the stack scopes IAM to it and lets it
   * notify the events queue, but cannot own its notification configuration
   * without a custom-resource Lambda; the `ExistingBucketNotifications`
   * output is the one command that sets it.
   */
  private existingBucket(name: string, eventsQueue: sqs.Queue): s3.IBucket {
    const bucket = s3.Bucket.fromBucketName(this, 'Bucket', name);
    eventsQueue.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'BucketNotifications',
        principals: [new iam.ServicePrincipal('s3.amazonaws.com')],
        actions: ['sqs:SendMessage'],
        resources: [eventsQueue.queueArn],
        conditions: {
          ArnEquals: { 'aws:SourceArn': bucket.bucketArn },
          StringEquals: { 'aws:SourceAccount': cdk.Aws.ACCOUNT_ID },
        },
      }),
    );
    const config = {
      QueueConfigurations: UPLOAD_PREFIXES.map((prefix) => ({
        QueueArn: '__QUEUE__',
        Events: ['s3:ObjectCreated:*'],
        Filter: { Key: { FilterRules: [{ Name: 'prefix', Value: prefix }] } },
      })),
    };
    const parts = JSON.stringify(config).split('__QUEUE__');
    const joined = cdk.Fn.join('', [
      `aws s3api put-bucket-notification-configuration --bucket ${name} --notification-configuration '`,
      ...parts.flatMap((part, i) => (i === 0 ? [part] : [eventsQueue.queueArn, part])),
      "'",
    ]);
    new cdk.CfnOutput(this, 'ExistingBucketNotifications', {
      value: joined,
      description: 'Run once: sends sources/ and jobs/ uploads of the existing bucket to the events queue (replaces its notification configuration)',
    });
    return bucket;
  }

  /** `reelay route` as a long-running poller instead of the Lambda. */
  private fargateRouter(o: {
    cluster: ecs.Cluster;
    vpc: ec2.Vpc;
    policies: iam.ManagedPolicy[];
    env: Record<string, string>;
    eventsQueue: sqs.Queue;
    retention: logs.RetentionDays;
    imageTag: string;
    subnets: ec2.SubnetType;
    s: Settings;
    repo: (id: string, description: string) => ecr.Repository;
  }): ecs.FargateService {
    const { cluster, vpc, eventsQueue, retention, imageTag, s, repo } = o;
    // 0 by default: the first deploy runs before the image is pushed, and a
    // service that must start a task on a missing tag rolls the deploy back.
    const minTasksParam = new cdk.CfnParameter(this, 'RouterMinTasks', {
      type: 'Number',
      default: 0,
      minValue: 0,
      maxValue: s.routerConcurrency,
      description: 'Router tasks kept running when the events queue is idle (raise after the image is pushed)',
    });
    const routerRepo = repo('RouterRepository', 'Push containers/router.Dockerfile here');
    const logGroup = new logs.LogGroup(this, 'RouterLogs', { retention, removalPolicy: cdk.RemovalPolicy.DESTROY });
    suppress(logGroup, [{ id: 'CKV_AWS_158', why: 'logs carry keys and ids, no secrets; CloudWatch encrypts at rest by default' }]);
    const taskRole = new iam.Role(this, 'RouterTaskRole', {
      assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com'),
    });
    for (const p of o.policies) p.attachToRole(taskRole);
    taskRole.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'ConsumeEventsQueue',
        actions: ['sqs:ReceiveMessage', 'sqs:DeleteMessage', 'sqs:ChangeMessageVisibility', 'sqs:GetQueueAttributes', 'sqs:GetQueueUrl'],
        resources: [eventsQueue.queueArn],
      }),
    );
    const task = new ecs.FargateTaskDefinition(this, 'RouterTask', {
      cpu: 2048,
      memoryLimitMiB: 4096,
      ephemeralStorageGiB: 50,
      taskRole,
      runtimePlatform: { cpuArchitecture: ecs.CpuArchitecture.X86_64, operatingSystemFamily: ecs.OperatingSystemFamily.LINUX },
      volumes: [{ name: 'scratch' }],
    });
    const env: Record<string, string> = { ...o.env, [ENV.device]: 'cpu', [ENV.concurrency]: '2' };
    if (s.containerConfigPath) env[ENV.config] = s.containerConfigPath;
    const image = ecs.ContainerImage.fromEcrRepository(routerRepo, imageTag);
    // A Fargate bind mount is root-owned and the router runs as uid 10001 on a
    // read-only root: this step opens /tmp to it (sticky, like any /tmp) and exits.
    const scratchInit = task.addContainer('scratch-init', {
      image,
      entryPoint: ['/bin/chmod'],
      command: ['1777', '/tmp'],
      user: '0',
      essential: false,
      readonlyRootFilesystem: true,
      logging: ecs.LogDrivers.awsLogs({ streamPrefix: 'router-init', logGroup }),
    });
    scratchInit.addMountPoints({ containerPath: '/tmp', sourceVolume: 'scratch', readOnly: false });
    const c = task.addContainer('router', {
      image,
      command: ['route'],
      essential: true,
      readonlyRootFilesystem: true,
      environment: env,
      stopTimeout: cdk.Duration.seconds(120),
      logging: ecs.LogDrivers.awsLogs({ streamPrefix: 'router', logGroup }),
    });
    c.addMountPoints({ containerPath: '/tmp', sourceVolume: 'scratch', readOnly: false });
    c.addContainerDependencies({ container: scratchInit, condition: ecs.ContainerDependencyCondition.SUCCESS });
    const sg = new ec2.SecurityGroup(this, 'RouterSecurityGroup', {
      vpc,
      description: 'reelay router: no inbound; HTTPS out to AWS APIs only',
      allowAllOutbound: false,
    });
    sg.addEgressRule(ec2.Peer.anyIpv4(), ec2.Port.tcp(443), 'HTTPS to S3, SQS, ECR, CloudWatch');
    const service = new ecs.FargateService(this, 'RouterService', {
      cluster,
      taskDefinition: task,
      desiredCount: 0,
      minHealthyPercent: 100,
      maxHealthyPercent: 200,
      securityGroups: [sg],
      vpcSubnets: { subnetType: o.subnets },
      assignPublicIp: o.subnets === ec2.SubnetType.PUBLIC, // no NAT: pulls and API calls go out directly
      circuitBreaker: { rollback: true },
    });
    const scaling = service.autoScaleTaskCount({ minCapacity: minTasksParam.valueAsNumber, maxCapacity: s.routerConcurrency });
    const perMinute = { statistic: 'Maximum', period: cdk.Duration.minutes(1) };
    // Out (from 0 too) while messages wait; in only when none waits and none
    // is in flight, so a long CPU step is never stopped by scale-in.
    scaling.scaleOnMetric('EventsBacklog', {
      metric: eventsQueue.metricApproximateNumberOfMessagesVisible(perMinute),
      adjustmentType: appscaling.AdjustmentType.CHANGE_IN_CAPACITY,
      scalingSteps: [
        { upper: 0, change: 0 },
        { lower: 1, change: +1 },
        { lower: 100, change: +3 },
      ],
      cooldown: cdk.Duration.seconds(120),
    });
    scaling.scaleOnMetric('EventsIdle', {
      metric: new cloudwatch.MathExpression({
        expression: 'visible + inflight',
        usingMetrics: {
          visible: eventsQueue.metricApproximateNumberOfMessagesVisible(perMinute),
          inflight: eventsQueue.metricApproximateNumberOfMessagesNotVisible(perMinute),
        },
        period: cdk.Duration.minutes(1),
        label: 'events messages waiting or in flight',
      }),
      adjustmentType: appscaling.AdjustmentType.CHANGE_IN_CAPACITY,
      scalingSteps: [
        { upper: 0, change: -1 },
        { lower: 1, change: 0 },
      ],
      evaluationPeriods: 5,
      cooldown: cdk.Duration.seconds(300),
    });
    new cdk.CfnOutput(this, 'RouterServiceName', { value: service.serviceName });
    new cdk.CfnOutput(this, 'RouterLogGroup', { value: logGroup.logGroupName });
    return service;
  }
}
