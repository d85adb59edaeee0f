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
import { LAMBDA_FONT, Settings, checkLambdaAsset } from './settings';

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
} as const;

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

/** S3 access for one role, by key prefix: never `s3:*`, never `Resource: *`. */
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
  ];
}

export class ReelayStack extends cdk.Stack {
  constructor(scope: Construct, id: string, props: ReelayStackProps) {
    super(scope, id, props);
    const s = props.settings;

    // ---- parameters: what an operator changes without touching code ----
    const bucketNameParam = new cdk.CfnParameter(this, 'BucketName', {
      type: 'String',
      default: '',
      allowedPattern: '^$|^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$',
      description: 'Name of the media bucket; empty: reelay-ACCOUNT-REGION',
    });
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
    const hasBucketName = new cdk.CfnCondition(this, 'HasBucketName', {
      expression: cdk.Fn.conditionNot(cdk.Fn.conditionEquals(bucketNameParam.valueAsString, '')),
    });
    const hasAlarmEmail = new cdk.CfnCondition(this, 'HasAlarmEmail', {
      expression: cdk.Fn.conditionNot(cdk.Fn.conditionEquals(alarmEmailParam.valueAsString, '')),
    });
    const bucketName = cdk.Token.asString(
      cdk.Fn.conditionIf(
        hasBucketName.logicalId,
        bucketNameParam.valueAsString,
        cdk.Fn.sub('reelay-${AWS::AccountId}-${AWS::Region}'),
      ),
    );
    const retention = s.logRetentionDays as logs.RetentionDays;

    // ---- alarms go to one topic ----
    const alarmTopic = new sns.Topic(this, 'AlarmTopic', {
      displayName: 'reelay alarms',
      masterKey: kms.Alias.fromAliasName(this, 'SnsAwsKey', 'alias/aws/sns'),
      enforceSSL: true,
    });
    const emailSub = new sns.CfnSubscription(this, 'AlarmEmailSubscription', {
      topicArn: alarmTopic.topicArn,
      protocol: 'email',
      endpoint: alarmEmailParam.valueAsString,
    });
    emailSub.cfnOptions.condition = hasAlarmEmail;

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
      return { queue, dlq, alarm };
    };
    // Lambda's rule: visibility >= 6x the function timeout, so retries of a
    // throttled batch don't redeliver while a copy still runs.
    const events = mkQueue('Events', cdk.Duration.seconds(6 * s.lambdaTimeoutSeconds), s.eventsMaxReceiveCount);
    // The worker heartbeats (extends visibility) on long tasks; this is the first lease.
    const gpu = mkQueue('Gpu', cdk.Duration.seconds(s.gpuTaskTimeoutSeconds), s.gpuMaxReceiveCount);

    // ---- buckets ----
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
    events.queue.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'BucketNotifications',
        principals: [new iam.ServicePrincipal('s3.amazonaws.com')],
        actions: ['sqs:SendMessage'],
        resources: [events.queue.queueArn],
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
        queue: events.queue.queueArn,
        filter: { s3Key: { rules: [{ name: 'prefix', value: prefix }] } },
      })),
    };
    cfnBucket.addResourceDependency(events.queue.node.findChild('Policy').node.defaultChild as cdk.CfnResource);

    const s3Url = cdk.Fn.join('', ['s3://', bucket.bucketName]);
    const commonEnv: Record<string, string> = {
      [ENV.bucket]: s3Url,
      [ENV.eventsQueueUrl]: events.queue.queueUrl,
      [ENV.gpuQueueUrl]: gpu.queue.queueUrl,
      [ENV.prices]: pricesParam.valueAsString,
      [ENV.logFormat]: 'json',
    };

    // ---- router: reads uploads and its own artifacts, writes work/exports/_reelay ----
    const routerRead = ['sources/', 'jobs/', 'work/', 'exports/', '_reelay/'];
    const routerWrite = ['work/', 'exports/', '_reelay/'];
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

    const vpc = new ec2.Vpc(this, 'Vpc', {
      maxAzs: 2,
      natGateways: s.natGateways,
      restrictDefaultSecurityGroup: false,
      subnetConfiguration: [
        { name: 'public', subnetType: ec2.SubnetType.PUBLIC, cidrMask: 24, mapPublicIpOnLaunch: false },
        { name: 'fleet', subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS, cidrMask: 20 },
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

    if (s.router === 'lambda') {
      const asset = checkLambdaAsset(s.lambdaAssetDir);
      const logGroup = new logs.LogGroup(this, 'RouterLogs', { retention, removalPolicy: cdk.RemovalPolicy.DESTROY });
      suppress(logGroup, [{ id: 'CKV_AWS_158', why: 'logs carry keys and ids, no secrets; CloudWatch encrypts at rest by default' }]);
      const role = new iam.Role(this, 'RouterRole', {
        assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
        managedPolicies: [routerPolicy],
      });
      logGroup.grantWrite(role);
      const env: Record<string, string> = {
        ...commonEnv,
        [ENV.device]: 'cpu',
        [ENV.concurrency]: String(s.routerBatchSize),
      };
      // Shipped only if package-lambda.sh put them in the asset.
      if (asset.ffmpeg) env[ENV.ffmpeg] = '/var/task/ffmpeg';
      if (asset.config) env[ENV.config] = '/var/task/reelay.toml';
      if (asset.font) env[ENV.font] = `/var/task/${LAMBDA_FONT}`;
      const routerFunction = new lambda.Function(this, 'Router', {
        description: 'reelay router: plans jobs, runs CPU steps, sends GPU steps',
        runtime: lambda.Runtime.PROVIDED_AL2023,
        architecture: s.lambdaArch === 'arm64' ? lambda.Architecture.ARM_64 : lambda.Architecture.X86_64,
        handler: 'bootstrap',
        code: lambda.Code.fromAsset(s.lambdaAssetDir),
        timeout: routerTimeout,
        memorySize: s.lambdaMemoryMiB,
        ephemeralStorageSize: cdk.Size.gibibytes(10), // FFmpeg temp files
        reservedConcurrentExecutions: s.routerConcurrency,
        environment: env,
        logGroup,
        role,
      });
      routerFunction.addEventSource(
        new SqsEventSource(events.queue, {
          batchSize: s.routerBatchSize,
          maxBatchingWindow: cdk.Duration.seconds(s.routerBatchingWindowSeconds),
          reportBatchItemFailures: true,
          // Match reserved concurrency: pollers beyond it get throttled, and
          // throttled receives count towards maxReceiveCount (false DLQs).
          maxConcurrency: Math.max(2, s.routerConcurrency),
        }),
      );
      suppress(routerFunction, [
        { id: 'CKV_AWS_116', why: 'invoked by an SQS event source mapping; failures go to the queue redrive DLQ, a function DLQ only serves async invokes' },
        { id: 'CKV_AWS_117', why: 'talks only to S3 and SQS over TLS with IAM auth; a VPC adds ENI cold starts and NAT cost, no isolation' },
        { id: 'CKV_AWS_173', why: 'environment holds queue URLs, bucket name and prices, no secrets' },
      ], [
        { id: 'W3005', why: 'CDK adds DependsOn on the role policy so permissions exist before the first poll; the extra role entry is harmless' },
      ]);
      new cdk.CfnOutput(this, 'RouterFunctionName', { value: routerFunction.functionName });
      new cdk.CfnOutput(this, 'RouterLogGroup', { value: logGroup.logGroupName });
    } else {
      this.fargateRouter(cluster, vpc, routerPolicy, commonEnv, events.queue, retention, imageTagParam.valueAsString, s, repo);
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
      instanceType: new ec2.InstanceType(s.gpuInstanceType),
      machineImage: ecs.EcsOptimizedImage.amazonLinux2023(ecs.AmiHardwareType.GPU),
      userData: ec2.UserData.forLinux(),
      role: instanceRole,
      securityGroup: fleetSg,
      requireImdsv2: true,
      httpPutResponseHopLimit: 1, // containers (bridge mode) can't reach instance credentials
      blockDevices: [
        {
          deviceName: '/dev/xvda',
          volume: ec2.BlockDeviceVolume.ebs(100, { encrypted: true, volumeType: ec2.EbsDeviceVolumeType.GP3, deleteOnTermination: true }),
        },
      ],
    });
    const asg = new autoscaling.AutoScalingGroup(this, 'GpuFleet', {
      vpc,
      vpcSubnets: { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS },
      launchTemplate,
      minCapacity: 0,
      maxCapacity: maxFleetParam.valueAsNumber,
      // Required by managed termination protection: ECS decides which instances may go.
      newInstancesProtectedFromScaleIn: true,
    });
    const capacityProvider = new ecs.AsgCapacityProvider(this, 'GpuCapacity', {
      autoScalingGroup: asg,
      enableManagedScaling: true,
      enableManagedTerminationProtection: true,
      enableManagedDraining: true,
      targetCapacityPercent: 100,
      minimumScalingStepSize: 1,
      maximumScalingStepSize: 10,
      instanceWarmupPeriod: 180,
    });
    cluster.addAsgCapacityProvider(capacityProvider);
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
          ...s3Access(bucket, ['sources/', 'work/', 'jobs/', '_reelay/'], ['work/', 'exports/', '_reelay/']),
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
    const workerEnv: Record<string, string> = {
      ...commonEnv,
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
      capacityProviderStrategies: [{ capacityProvider: capacityProvider.capacityProviderName, weight: 1 }],
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
    // moves: a step policy wakes the service when work arrives and none runs.
    scaling.scaleOnMetric('WakeFromZero', {
      metric: new cloudwatch.MathExpression({
        expression: 'IF(FILL(tasks, 0) < 1, visible, 0)',
        usingMetrics: {
          visible: gpu.queue.metricApproximateNumberOfMessagesVisible({ statistic: 'Maximum', period: cdk.Duration.minutes(1) }),
          tasks: new cloudwatch.Metric({
            namespace: tasksStat.metric.namespace,
            metricName: tasksStat.metric.metricName,
            dimensionsMap: { ClusterName: cluster.clusterName, ServiceName: workerService.serviceName },
            statistic: 'Average',
            period: cdk.Duration.minutes(1),
          }),
        },
        period: cdk.Duration.minutes(1),
        label: 'gpu backlog while no worker runs',
      }),
      adjustmentType: appscaling.AdjustmentType.CHANGE_IN_CAPACITY,
      scalingSteps: [
        { upper: 0, change: 0 },
        { lower: 1, change: +1 },
        { lower: 10, change: +3 },
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

  /** `reelay route` as a long-running poller instead of the Lambda. */
  private fargateRouter(
    cluster: ecs.Cluster,
    vpc: ec2.Vpc,
    routerPolicy: iam.ManagedPolicy,
    commonEnv: Record<string, string>,
    eventsQueue: sqs.Queue,
    retention: logs.RetentionDays,
    imageTag: string,
    s: Settings,
    repo: (id: string, description: string) => ecr.Repository,
  ): void {
    const routerRepo = repo('RouterRepository', 'Push containers/router.Dockerfile here');
    const logGroup = new logs.LogGroup(this, 'RouterLogs', { retention, removalPolicy: cdk.RemovalPolicy.DESTROY });
    suppress(logGroup, [{ id: 'CKV_AWS_158', why: 'logs carry keys and ids, no secrets; CloudWatch encrypts at rest by default' }]);
    const taskRole = new iam.Role(this, 'RouterTaskRole', {
      assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com'),
      managedPolicies: [routerPolicy],
    });
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
    const env: Record<string, string> = { ...commonEnv, [ENV.device]: 'cpu', [ENV.concurrency]: '2' };
    if (s.containerConfigPath) env[ENV.config] = s.containerConfigPath;
    const c = task.addContainer('router', {
      image: ecs.ContainerImage.fromEcrRepository(routerRepo, imageTag),
      command: ['route'],
      essential: true,
      readonlyRootFilesystem: true,
      environment: env,
      stopTimeout: cdk.Duration.seconds(120),
      logging: ecs.LogDrivers.awsLogs({ streamPrefix: 'router', logGroup }),
    });
    c.addMountPoints({ containerPath: '/tmp', sourceVolume: 'scratch', readOnly: false });
    const sg = new ec2.SecurityGroup(this, 'RouterSecurityGroup', {
      vpc,
      description: 'reelay router: no inbound; HTTPS out to AWS APIs only',
      allowAllOutbound: false,
    });
    sg.addEgressRule(ec2.Peer.anyIpv4(), ec2.Port.tcp(443), 'HTTPS to S3, SQS, ECR, CloudWatch');
    const service = new ecs.FargateService(this, 'RouterService', {
      cluster,
      taskDefinition: task,
      desiredCount: 1,
      minHealthyPercent: 100,
      maxHealthyPercent: 200,
      securityGroups: [sg],
      vpcSubnets: { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS },
      assignPublicIp: false,
      circuitBreaker: { rollback: true },
    });
    const scaling = service.autoScaleTaskCount({ minCapacity: 1, maxCapacity: s.routerConcurrency });
    scaling.scaleOnMetric('EventsBacklog', {
      metric: eventsQueue.metricApproximateNumberOfMessagesVisible({ statistic: 'Maximum', period: cdk.Duration.minutes(1) }),
      adjustmentType: appscaling.AdjustmentType.CHANGE_IN_CAPACITY,
      scalingSteps: [
        { upper: 0, change: -1 },
        { lower: 10, change: +1 },
        { lower: 100, change: +3 },
      ],
      cooldown: cdk.Duration.seconds(60),
    });
    new cdk.CfnOutput(this, 'RouterServiceName', { value: service.serviceName });
    new cdk.CfnOutput(this, 'RouterLogGroup', { value: logGroup.logGroupName });
  }
}
