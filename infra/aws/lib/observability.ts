import * as cdk from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as cwActions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';

/**
 * reelay's own metrics, as the binary emits them (CloudWatch embedded metric
 * format on its JSON log lines): namespace, dimension sets and names.
 */
export const REELAY_METRICS = {
  namespace: 'reelay',
  dimensionSets: [['kind', 'device', 'outcome'], ['outcome']],
  tasks: 'tasks',
  taskMs: 'task_ms',
  queueToStartMs: 'queue_to_start_ms',
  costUsd: 'cost_usd',
  outcomes: ['done', 'skipped', 'busy', 'failed', 'dead_lettered', 'superseded'],
} as const;

/** An ECS service whose tasks should be running when it wants them. */
export interface WatchedService {
  readonly label: string;
  readonly clusterName: string;
  readonly serviceName: string;
}

export interface ObservabilityProps {
  readonly topic: sns.ITopic;
  readonly events: sqs.IQueue;
  readonly gpu: sqs.IQueue;
  readonly dlqs: sqs.IQueue[];
  readonly routerFunction?: lambda.IFunction;
  readonly services: WatchedService[];
  /** Oldest gpu message age that means no worker is receiving (a task never started). */
  readonly gpuStallSeconds: number;
  /** Oldest events message age that means the router is not keeping up. */
  readonly eventsStallSeconds: number;
}

const FIVE_MINUTES = cdk.Duration.minutes(5);

/**
 * Alarms for the stalls a fresh account hits (no G-instance quota, an image
 * tag never pushed: messages wait, never received, never dead-lettered), for
 * the router's errors and throttles and for reelay's failed and dead-lettered
 * tasks, plus one dashboard with all of it.
 */
export class Observability extends Construct {
  readonly alarms: Record<string, cloudwatch.Alarm> = {};
  readonly dashboard: cloudwatch.Dashboard;

  constructor(scope: Construct, id: string, p: ObservabilityProps) {
    super(scope, id);
    const alarm = (name: string, description: string, metric: cloudwatch.IMetric, threshold: number, evaluationPeriods = 1) => {
      const a = new cloudwatch.Alarm(this, name, {
        alarmDescription: `reelay: ${description}`,
        metric,
        threshold,
        evaluationPeriods,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
      a.addAlarmAction(new cwActions.SnsAction(p.topic));
      this.alarms[name] = a;
      return a;
    };

    const gpuAge = p.gpu.metricApproximateAgeOfOldestMessage({ statistic: 'Maximum', period: FIVE_MINUTES });
    const eventsAge = p.events.metricApproximateAgeOfOldestMessage({ statistic: 'Maximum', period: FIVE_MINUTES });
    alarm(
      'GpuMessagesNotReceived',
      `a gpu message has waited ${p.gpuStallSeconds}s: no worker receives (G-instance vCPU quota 0? image tag not pushed? see the WorkerTasksNotStarting alarm)`,
      gpuAge,
      p.gpuStallSeconds,
    );
    alarm('EventsMessagesWaiting', `an events message has waited ${p.eventsStallSeconds}s: the router is failing or not keeping up`, eventsAge, p.eventsStallSeconds);

    const serviceGap = (s: WatchedService) => {
      const m = (metricName: string) =>
        new cloudwatch.Metric({
          namespace: 'ECS/ContainerInsights',
          metricName,
          dimensionsMap: { ClusterName: s.clusterName, ServiceName: s.serviceName },
          statistic: 'Maximum',
          period: FIVE_MINUTES,
        });
      return new cloudwatch.MathExpression({
        expression: 'FILL(desired, 0) - FILL(running, 0)',
        usingMetrics: { desired: m('DesiredTaskCount'), running: m('RunningTaskCount') },
        period: FIVE_MINUTES,
        label: `${s.label}: tasks wanted but not running`,
      });
    };
    for (const s of p.services) {
      // 15 minutes covers an instance boot and an image pull; longer means a
      // quota, a capacity shortage or a missing image.
      alarm(`${s.label}TasksNotStarting`, `${s.label} wants tasks that have not started for 15 minutes (capacity, quota or image)`, serviceGap(s), 1, 3);
    }

    if (p.routerFunction) {
      alarm('RouterErrors', 'the router Lambda failed invocations (see its log group)', p.routerFunction.metricErrors({ period: FIVE_MINUTES, statistic: 'Sum' }), 1);
      alarm('RouterThrottles', 'the router Lambda was throttled (account concurrency quota)', p.routerFunction.metricThrottles({ period: FIVE_MINUTES, statistic: 'Sum' }), 1);
    }

    // The ["outcome"] dimension set, exactly: a metric with other dimensions is another metric.
    const tasks = (outcome: string, label?: string) =>
      new cloudwatch.Metric({
        namespace: REELAY_METRICS.namespace,
        metricName: REELAY_METRICS.tasks,
        dimensionsMap: { outcome },
        statistic: 'Sum',
        period: FIVE_MINUTES,
        label,
      });
    alarm('TasksDeadLettered', 'a task was dead-lettered; its failure record is under _reelay/failures/', tasks('dead_lettered'), 1);
    alarm('TasksFailing', 'five or more task attempts failed in 5 minutes (they are retried; see _reelay/failures/)', tasks('failed'), 5);

    const search = (metric: string, stat: string, label: string) =>
      new cloudwatch.MathExpression({
        expression: `SEARCH('{${REELAY_METRICS.namespace},kind,device,outcome} MetricName="${metric}"', '${stat}', 300)`,
        label,
        period: FIVE_MINUTES,
      });
    this.dashboard = new cloudwatch.Dashboard(this, 'Dashboard', {
      defaultInterval: cdk.Duration.hours(6),
      widgets: [
        [
          new cloudwatch.GraphWidget({
            title: 'reelay tasks by outcome',
            left: REELAY_METRICS.outcomes.map((o) => tasks(o, o)),
            stacked: true,
            width: 12,
          }),
          new cloudwatch.GraphWidget({
            title: 'task time p90 (ms) by kind, device, outcome',
            left: [search(REELAY_METRICS.taskMs, 'p90', 'task_ms p90')],
            width: 12,
          }),
        ],
        [
          new cloudwatch.GraphWidget({
            title: 'queue to start p90 (ms)',
            left: [search(REELAY_METRICS.queueToStartMs, 'p90', 'queue_to_start_ms p90')],
            width: 8,
          }),
          new cloudwatch.GraphWidget({
            title: 'cost (USD per 5 min)',
            left: [search(REELAY_METRICS.costUsd, 'Sum', 'cost_usd')],
            width: 8,
          }),
          new cloudwatch.AlarmStatusWidget({ title: 'alarms', alarms: Object.values(this.alarms), width: 8 }),
        ],
        [
          new cloudwatch.GraphWidget({
            title: 'queues: waiting and in flight',
            left: [p.events, p.gpu].flatMap((q) => [
              q.metricApproximateNumberOfMessagesVisible({ period: cdk.Duration.minutes(1), statistic: 'Maximum' }),
              q.metricApproximateNumberOfMessagesNotVisible({ period: cdk.Duration.minutes(1), statistic: 'Maximum' }),
            ]),
            width: 8,
          }),
          new cloudwatch.GraphWidget({ title: 'age of oldest message (s)', left: [eventsAge, gpuAge], width: 8 }),
          new cloudwatch.GraphWidget({
            title: 'dead-letter queues',
            left: p.dlqs.map((q) => q.metricApproximateNumberOfMessagesVisible({ period: cdk.Duration.minutes(1), statistic: 'Maximum' })),
            width: 8,
          }),
        ],
        [
          ...p.services.map(
            (s) => new cloudwatch.GraphWidget({ title: `${s.label}: wanted but not running`, left: [serviceGap(s)], width: 12 }),
          ),
          ...(p.routerFunction
            ? [
                new cloudwatch.GraphWidget({
                  title: 'router Lambda',
                  left: [
                    p.routerFunction.metricInvocations({ period: FIVE_MINUTES }),
                    p.routerFunction.metricErrors({ period: FIVE_MINUTES }),
                    p.routerFunction.metricThrottles({ period: FIVE_MINUTES }),
                  ],
                  right: [p.routerFunction.metricDuration({ period: FIVE_MINUTES, statistic: 'p90' })],
                  width: 12,
                }),
              ]
            : []),
        ],
      ],
    });
  }
}
