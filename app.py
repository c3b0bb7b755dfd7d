"""mmchat: chat about photos with a local vision-language model, by text or voice.

    python app.py --help
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import threading

from mmchat.config import Config, parse_config

log = logging.getLogger("mmchat.app")


def build_services(config: Config):
    from mmchat.model_handle import ModelHandle
    from mmchat.turn import Services

    store = open_store(config)  # before the model: a data folder it can't use ends the start at once
    if config.engine == "remote":  # the model runs elsewhere: torch is never imported for it
        from mmchat.engine.remote import create_remote_engine

        engine = ModelHandle(lambda progress: create_remote_engine(config, progress), "model").start()
    else:
        from mmchat.engine.local import create_local_engine

        engine = ModelHandle(lambda progress: create_local_engine(config, progress), "model").start()
        _explain_when_unavailable(engine, config)
    stt = None
    if config.stt_backend != "none":
        from mmchat.stt import create_speech_to_text

        stt = ModelHandle(lambda progress: create_speech_to_text(config), "speech recognizer").start()
    tts = None
    if config.tts_backend != "none":
        from mmchat.tts import create_text_to_speech
        from mmchat.turn import Speech

        def tts(speech: Speech):
            return create_text_to_speech(dataclasses.replace(config, voice=speech.voice, speech_rate=speech.rate))

        # Load the default voice now, in the background, so the first spoken answer is quick.
        ModelHandle(lambda progress: tts(Speech(config.voice, config.speech_rate)), "voice").start()
    return Services(config=config, engine=engine, stt=stt, tts=tts, store=store)


def open_store(config: Config):
    """The conversation store, once per process. Its first start in a data folder brings
    in the JSON conversations of earlier versions and logs how many it imported."""
    from mmchat.store import SQLiteStore, StoreError

    try:
        store = SQLiteStore(config.data_dir)
    except StoreError as exc:
        raise SystemExit(f"Can't use the conversations in {config.data_dir}: {exc}") from None
    log.info("Conversations are kept in %s", store.path)
    return store


def _explain_when_unavailable(engine, config: Config) -> None:
    """If the model can't be loaded, say in the terminal (after the loader's own message) how to try the app anyway."""
    from mmchat.errors import ModelUnavailableError
    from mmchat.web.settings import bundled_model_hint

    def watch() -> None:
        try:
            engine.wait()
        except ModelUnavailableError:
            hint = bundled_model_hint(config)
            if hint:
                log.warning("%s", hint)

    threading.Thread(target=watch, name="explain-model-unavailable", daemon=True).start()


def main(argv: list[str] | None = None) -> None:
    config = parse_config(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from mmchat.server import build_page, check_options, serve

    check_options(config)  # before minutes of loading a model
    services = build_services(config)
    demo, voice = build_page(services)
    serve(demo, services, voice)  # the page, its voice socket and the HTTP API (/v1) on one port


if __name__ == "__main__":
    main(sys.argv[1:])
