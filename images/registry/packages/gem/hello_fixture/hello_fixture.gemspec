Gem::Specification.new do |s|
  s.name = "hello_fixture"
  s.version = "1.0.0"
  s.summary = "A harmless gem of coderun's registry fixture."
  s.authors = ["coderun"]
  s.license = "MIT"
  s.files = ["lib/hello_fixture.rb"]
end
