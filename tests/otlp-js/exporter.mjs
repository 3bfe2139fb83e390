// The OTLP/HTTP log exporter both senders use (protobuf or JSON), remembering every failed
// export, and the end of a send: flush, shut down, exit 1 naming the failures if any.
import { OTLPLogExporter as JsonExporter } from '@opentelemetry/exporter-logs-otlp-http';
import { OTLPLogExporter as ProtobufExporter } from '@opentelemetry/exporter-logs-otlp-proto';

export function logExporter(baseUrl, protocol) {
  const Exporter = protocol === 'http/json' ? JsonExporter : ProtobufExporter;
  const failures = [];
  const exporter = new Exporter({ url: `${baseUrl}/v1/logs` });
  const exportOnce = exporter.export.bind(exporter);
  exporter.export = (records, done) =>
    exportOnce(records, (result) => {
      if (result.code !== 0) failures.push(String(result.error));
      done(result);
    });
  return { exporter, failures };
}

export async function finish(provider, failures) {
  await provider.forceFlush();
  await provider.shutdown();
  if (failures.length > 0) {
    console.error(`export failed: ${failures.join('; ')}`);
    process.exit(1);
  }
}
