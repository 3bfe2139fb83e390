// The OTLP log exporter the senders use (HTTP protobuf or JSON, or gRPC with gzip as Gemini
// CLI sends it), remembering every failed export, and the end of a send: flush, shut down,
// exit 1 naming the failures if any.
import { OTLPLogExporter as JsonExporter } from '@opentelemetry/exporter-logs-otlp-http';
import { OTLPLogExporter as ProtobufExporter } from '@opentelemetry/exporter-logs-otlp-proto';
import { OTLPLogExporter as GrpcExporter } from '@opentelemetry/exporter-logs-otlp-grpc';
import { CompressionAlgorithm } from '@opentelemetry/otlp-exporter-base';

// `grpc`: BASE_URL is the gRPC door's http://host:port, as Gemini reduces its endpoint.
export function logExporter(baseUrl, protocol) {
  const failures = [];
  const exporter = protocol === 'grpc'
    ? new GrpcExporter({ url: baseUrl, compression: CompressionAlgorithm.GZIP })
    : new (protocol === 'http/json' ? JsonExporter : ProtobufExporter)({ url: `${baseUrl}/v1/logs` });
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
