package emulator

// Env is what an AWS SDK program needs to use a running kinesis-local (or
// kinesalite) and dynalite: their endpoints, a region, dummy credentials,
// and no instance-metadata lookup (which can make a missing credential
// retry instead of fail). Each entry is NAME=value, as in os.Environ.
func Env(kinesis, dynamodb *Server) []string {
	return []string{
		"AWS_ENDPOINT_URL_KINESIS=" + kinesis.Endpoint,
		"AWS_ENDPOINT_URL_DYNAMODB=" + dynamodb.Endpoint,
		"AWS_REGION=us-east-1",
		"AWS_ACCESS_KEY_ID=000000000000",
		"AWS_SECRET_ACCESS_KEY=local",
		"AWS_EC2_METADATA_DISABLED=true",
	}
}
