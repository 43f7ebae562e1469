export { kafkaArchiveSink } from './archive.js';
export {
  type CompressionCode,
  type ConsumedMessage,
  type FetchedBatch,
  type GroupConsumer,
  type GroupConsumerConfig,
  type GroupConsumerHandlers,
  type KafkaAdmin,
  type KafkaClient,
  type KafkaClientKind,
  type KafkaInput,
  type KafkaProducer,
  kafkajsClient,
  type OutgoingMessage,
  type PartitionOffsets,
  type PlatformaticClientOptions,
  platformaticClient,
  type TopicSpec,
} from './client/index.js';
export {
  type AvroType,
  canonicalSchema,
  createDecoder,
  createEncoder,
  type Decoder,
  type DecoderOptions,
  type Encoder,
  type EncodingOptions,
  rabinFingerprint,
  type SchemaLookup,
  type SchemaRegistryClient,
  schemaFromColumns,
} from './encoding.js';
export { type KafkaBatchMeta, type KafkaRange, kafkaRange } from './meta.js';
export {
  type ArchiveOptions,
  archiveOptionsSchema,
  consumerOptionsSchema,
  HEADER,
  kafkaClientConfig,
  type PublishOptions,
  publishOptionsSchema,
  type ResolvedSubscribeOptions,
  type SubscribeOptions,
  subscribeOptionsSchema,
} from './options.js';
export { kafkaPublishSink, messageKey } from './publish.js';
export { schemaTopicLookup } from './schemas.js';
export {
  defaultStreamFor,
  type KafkaPosition,
  kafkaSubscribeSource,
} from './subscribe.js';
