// Sends Gemini CLI's token counter (`gemini_cli.token.usage`, by model and type) the way Gemini
// CLI does: the OpenTelemetry JavaScript SDK's metrics with no temporality set, so running
// totals (cumulative), with the common attributes on every point
// (shared/reference/other-agents-telemetry.md §3.4). Two exports, the second after more use.
//   node gemini_metrics.mjs BASE_URL http/json|grpc SESSION_ID EMAIL MODEL FIRST SECOND
// FIRST and SECOND are each `input,output,thought,cache,tool`: the totals at each export.
import { MeterProvider, PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics';
import { OTLPMetricExporter as JsonExporter } from '@opentelemetry/exporter-metrics-otlp-http';
import { OTLPMetricExporter as GrpcExporter } from '@opentelemetry/exporter-metrics-otlp-grpc';
import { CompressionAlgorithm } from '@opentelemetry/otlp-exporter-base';
import { resourceFromAttributes } from '@opentelemetry/resources';

const [baseUrl, protocol, session, email, model, first, second] = process.argv.slice(2);
const failures = [];
const exporter = protocol === 'grpc'
  ? new GrpcExporter({ url: baseUrl, compression: CompressionAlgorithm.GZIP })
  : new JsonExporter({ url: `${baseUrl}/v1/metrics` });
const exportOnce = exporter.export.bind(exporter);
exporter.export = (metrics, done) =>
  exportOnce(metrics, (result) => {
    if (result.code !== 0) failures.push(String(result.error));
    done(result);
  });
const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 3_600_000 });
const provider = new MeterProvider({
  resource: resourceFromAttributes({
    'service.name': 'gemini-cli',
    'service.version': 'v22.17.0',
    'session.id': session,
  }),
  readers: [reader],
});
const tokens = provider.getMeter('gemini-cli').createCounter('gemini_cli.token.usage', {
  description: 'Counts the total number of tokens used.',
  valueType: 1, // INT
});
const common = {
  'session.id': session,
  'installation.id': 'install-gemini',
  'user.email': email,
  interactive: true,
  auth_type: 'gemini-api-key',
};
const types = ['input', 'output', 'thought', 'cache', 'tool'];
let counted = [0, 0, 0, 0, 0];
async function countUpTo(totals) {
  const wanted = totals.split(',').map(Number);
  types.forEach((type, i) => {
    if (wanted[i] > counted[i]) tokens.add(wanted[i] - counted[i], { ...common, model, type });
  });
  counted = wanted;
  await reader.forceFlush();
}
await countUpTo(first);
await countUpTo(second);
await provider.shutdown();
if (failures.length > 0) {
  console.error(`export failed: ${failures.join('; ')}`);
  process.exit(1);
}
