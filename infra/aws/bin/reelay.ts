import * as cdk from 'aws-cdk-lib';
import { ReelayStack } from '../lib/reelay-stack';
import { readSettings } from '../lib/settings';

const app = new cdk.App();
const stackName = (app.node.tryGetContext('stackName') as string | undefined) || 'Reelay';
// Environment-agnostic on purpose: synth needs no account, no credentials, no lookups.
new ReelayStack(app, stackName, {
  settings: readSettings(app.node),
  description: 'reelay: event-driven video pipeline on a bucket (router + T4 GPU fleet)',
});
app.synth();
